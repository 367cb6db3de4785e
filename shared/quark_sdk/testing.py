"""pytest plugin: real servers once per session, a fresh database and NATS namespace per test.

Servers: `QUARK_TEST_POSTGRES_URL` / `QUARK_TEST_REDIS_URL` / `QUARK_TEST_NATS_URL`
when set, otherwise PostgreSQL, Valkey and NATS started from the pinned wheels
in a temporary directory. Each test that asks for a module's database gets a
new database cloned from a template migrated once per session
(`CREATE DATABASE … TEMPLATE …` takes milliseconds), and its own NATS
namespace (subject and stream prefix) so no test sees another's events.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
import pytest
from fastapi import FastAPI
from pydantic import SecretStr

from quark_sdk.app import QuarkModule, ServiceContext, create_service_app
from quark_sdk.auth import JWKSCache, SigningKeySet, TokenVerifier
from quark_sdk.config import ServiceSettings, to_async_url
from quark_sdk.db import upgrade_database
from quark_sdk.embedded import EmbeddedInfra


@dataclass
class QuarkServers:
    postgres_url: str  # server-level URL (database "postgres")
    redis_url: str
    nats_url: str
    infra: EmbeddedInfra | None = None
    templates: dict[str, str] = field(default_factory=dict)

    def database_url(self, name: str) -> str:
        parts = urlsplit(self.postgres_url)
        return urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, parts.fragment))

    def template_for(self, module: QuarkModule) -> str:
        """Migrate a template database for the module once per session."""
        if module.name not in self.templates:
            name = f"tpl_{module.database_name}_{os.getpid()}"
            asyncio.run(_recreate_database(self.postgres_url, name))
            if module.migrations_dir.exists():
                upgrade_database(module.migrations_dir, to_async_url(self.database_url(name)))
            self.templates[module.name] = name
        return self.templates[module.name]


async def _admin(url: str) -> asyncpg.Connection:
    return await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"), timeout=10)


async def _recreate_database(server_url: str, name: str, template: str | None = None) -> None:
    conn = await _admin(server_url)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        tpl = f' TEMPLATE "{template}"' if template else ""
        await conn.execute(f'CREATE DATABASE "{name}"{tpl}')
    finally:
        await conn.close()


async def _drop_database(server_url: str, name: str) -> None:
    conn = await _admin(server_url)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def quark_servers() -> Iterator[QuarkServers]:
    pg, rd, nt = (os.environ.get(f"QUARK_TEST_{k}_URL") for k in ("POSTGRES", "REDIS", "NATS"))
    tmp: Path | None = None
    infra: EmbeddedInfra | None = None
    if not (pg and rd and nt):
        tmp = Path(tempfile.mkdtemp(prefix="quark-test-"))
        infra = EmbeddedInfra(tmp, persist_redis=False).start()
    servers = QuarkServers(
        postgres_url=pg or (infra.postgres.url if infra else ""),
        redis_url=rd or (infra.redis.url if infra else ""),
        nats_url=nt or (infra.nats.url if infra else ""),
        infra=infra,
    )
    try:
        yield servers
    finally:
        for tpl in servers.templates.values():
            with contextlib.suppress(Exception):
                asyncio.run(_drop_database(servers.postgres_url, tpl))
        if infra is not None:
            infra.stop()
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


@dataclass
class RunningModule:
    app: FastAPI
    client: httpx.AsyncClient
    settings: ServiceSettings

    @property
    def ctx(self) -> ServiceContext:
        ctx: ServiceContext = self.app.state.quark
        return ctx


class QuarkTestEnv:
    """Per-test handle: databases, namespace, running modules and tokens, all cleaned up after the test."""

    def __init__(self, servers: QuarkServers) -> None:
        self.servers = servers
        self.namespace = "t" + uuid.uuid4().hex[:10]
        self.keys = SigningKeySet.generate()
        self.hub_keys = SigningKeySet.generate()
        self._databases: list[str] = []
        self._stack = contextlib.AsyncExitStack()
        self._redis_prefixes: list[str] = []

    async def database(self, module: QuarkModule) -> str:
        """A fresh database for the module, cloned from its migrated template; returns its async URL."""
        template = await asyncio.to_thread(self.servers.template_for, module)
        name = f"{module.database_name}_{uuid.uuid4().hex[:12]}"
        await _recreate_database(self.servers.postgres_url, name, template)
        self._databases.append(name)
        return to_async_url(self.servers.database_url(name))

    async def settings(self, module: QuarkModule, **overrides: Any) -> ServiceSettings:
        values: dict[str, Any] = {
            "env": "test",
            "postgres_url": self.servers.postgres_url,
            "redis_url": self.servers.redis_url,
            "nats_url": self.servers.nats_url,
            "event_namespace": self.namespace,
            "hub_url": None,
            "log_level": "WARNING",
            "json_logs": False,
            "outbox_poll_interval": 0.2,
        }
        if module.metadata is not None or module.manifest().requires.database:
            values["database_url"] = await self.database(module)
        values.update(overrides)
        return module.settings_cls.load(**values)

    async def start(self, module: QuarkModule, *, keep_verifier: bool = False, **overrides: Any) -> RunningModule:
        """Run a module's app with its lifespan, reachable through an httpx client over ASGI.

        Tokens are verified against this test's keys (`user_token`, `service_token`) unless
        `keep_verifier`: then the module keeps its own (the auth service verifying what it issues)."""
        settings = await self.settings(module, **overrides)
        app = create_service_app(module, settings, migrate_on_start=False)
        if not keep_verifier:
            app.state.token_verifier = self.verifier(
                settings.token_audience, require_verified_to_write=settings.require_verified_to_write)
            app.state.quark.verifier = app.state.token_verifier
        await self._stack.enter_async_context(app.router.lifespan_context(app))
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")
        self._stack.push_async_callback(client.aclose)
        return RunningModule(app=app, client=client, settings=settings)

    async def spawn(self, module: QuarkModule, ref: str, *, pythonpath: Sequence[str] = (),
                    **overrides: Any) -> ModuleProcess:
        """Run a module as its own OS process (`quark serve REF`) on a free port, like the fleet does."""
        from quark_sdk.embedded import free_port

        port = int(overrides.pop("port", 0)) or free_port()
        settings = await self.settings(module, port=port, **overrides)
        env = {**os.environ, **settings_env(settings)}
        if pythonpath:
            env["PYTHONPATH"] = os.pathsep.join([*pythonpath, env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
        proc = ModuleProcess(ref, env=env, port=port, settings=settings)
        self._stack.callback(proc.stop)
        await asyncio.to_thread(proc.start)
        return proc

    # -- tokens ----------------------------------------------------------------------------

    def verifier(self, audience: str = "quark", *, require_verified_to_write: bool = True) -> TokenVerifier:
        """A verifier that trusts this test's auth and hub keys, fetched over (in-process) HTTP."""
        jwks = FastAPI()

        @jwks.get("/auth/jwks.json")
        async def auth_jwks() -> dict[str, Any]:
            return self.keys.jwks()

        @jwks.get("/hub/jwks.json")
        async def hub_jwks() -> dict[str, Any]:
            return self.hub_keys.jwks()

        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=jwks), base_url="http://jwks")
        self._stack.push_async_callback(client.aclose)
        return TokenVerifier(
            {
                "quark-auth": JWKSCache("http://jwks/auth/jwks.json", client=client),
                "quark-hub": JWKSCache("http://jwks/hub/jwks.json", client=client),
            },
            audience=audience,
            require_verified_to_write=require_verified_to_write,
        )

    def user_token(self, subject: str | None = None, *, username: str = "alice", roles: tuple[str, ...] = ("user",),
                   permissions: tuple[str, ...] = (), ttl: int = 900, audience: str = "quark",
                   verified: bool = True, issued_at: int | None = None) -> str:
        """A user access token signed by this test's auth keys (verified account unless `verified=False`)."""
        import time

        now = int(time.time()) if issued_at is None else issued_at
        return self.keys.sign({
            "sub": subject or str(uuid.uuid4()), "username": username, "roles": list(roles),
            "permissions": list(permissions), "iss": "quark-auth", "aud": audience, "iat": now, "exp": now + ttl,
            "jti": uuid.uuid4().hex, "email_verified": verified,
        })

    def service_token(self, module: str, scopes: tuple[str, ...], *, audience: str = "quark", ttl: int = 300) -> str:
        import time

        now = int(time.time())
        return self.hub_keys.sign({
            "sub": module, "scope": " ".join(scopes), "token_use": "service", "iss": "quark-hub", "aud": audience,
            "iat": now, "exp": now + ttl, "jti": uuid.uuid4().hex,
        })

    @staticmethod
    def bearer(token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}

    # -- teardown ----------------------------------------------------------------------------

    async def close(self) -> None:
        await self._stack.aclose()
        await self._delete_streams()
        for name in self._databases:
            with contextlib.suppress(Exception):
                await _drop_database(self.servers.postgres_url, name)

    async def _delete_streams(self) -> None:
        import nats

        with contextlib.suppress(Exception):
            nc = await nats.connect(self.servers.nats_url, connect_timeout=2, max_reconnect_attempts=0)
            try:
                jsm = nc.jsm()
                prefix = self.namespace.upper() + "_"
                for info in await jsm.streams_info():
                    if info.config.name and info.config.name.startswith(prefix):
                        await jsm.delete_stream(info.config.name)
            finally:
                await nc.close()


def settings_env(settings: ServiceSettings) -> dict[str, str]:
    """The environment variables that reproduce `settings` in another process."""
    prefix = str(type(settings).model_config.get("env_prefix", "")).upper()
    env: dict[str, str] = {}
    for name, value in settings.model_dump(mode="json").items():
        if value is None:
            continue
        secret = getattr(settings, name, None)
        if isinstance(secret, SecretStr):  # model_dump masks secrets as '**********'
            value = secret.get_secret_value()
        env[f"{prefix}{name.upper()}"] = json.dumps(value) if isinstance(value, list | dict) else str(value)
    return env


class ModuleProcess:
    """One module in its own process: start (waits for /health), SIGKILL, restart — for fleet and fault tests."""

    def __init__(self, ref: str, *, env: dict[str, str], port: int, settings: ServiceSettings | None = None) -> None:
        self.ref = ref
        self.env = env
        self.port = port
        self.settings = settings
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = Path(tempfile.mkstemp(prefix=f"quark-{port}-", suffix=".log")[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60) -> ModuleProcess:
        cmd = [sys.executable, "-m", "quark_sdk.cli", "serve", self.ref, "--port", str(self.port),
               "--host", "127.0.0.1", "--no-migrate"]
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(cmd, env=self.env, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.ref} exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                if httpx.get(self.url + "/health", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"{self.ref} not healthy within {timeout}s:\n{self.log_tail()}")

    def kill(self) -> None:
        """SIGKILL: no shutdown hooks run, no deregistration — a crash."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


@pytest.fixture
async def quark(quark_servers: QuarkServers) -> AsyncIterator[QuarkTestEnv]:
    env = QuarkTestEnv(quark_servers)
    try:
        yield env
    finally:
        await env.close()


def assert_problem(resp: httpx.Response, status: int | tuple[int, ...]) -> dict[str, Any]:
    """The response is an RFC 9457 problem with that status (or one of those): returns its body."""
    statuses = (status,) if isinstance(status, int) else status
    assert resp.status_code in statuses, f"{resp.status_code} not in {statuses}: {resp.text[:500]}"
    assert resp.headers["content-type"].startswith("application/problem+json"), resp.headers.get("content-type")
    body: dict[str, Any] = resp.json()
    assert body["status"] == resp.status_code
    return body


def wait_until(probe: Any, *, timeout: float = 15.0, interval: float = 0.05, what: str = "condition") -> Any:
    """`eventually` for synchronous code (subprocess fixtures): poll until truthy, fail after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        last = probe()
        if last:
            return last
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what} not reached within {timeout}s (last value: {last!r})")
        time.sleep(min(interval, max(0.0, deadline - time.monotonic())))


class ThreadedServer:
    """An ASGI test double served by uvicorn on a thread (and event loop) of its own, for doubles that
    synchronous code or a fixture outside the test's loop calls: an identity provider, an SMS gateway."""

    def __init__(self, app: Any, port: int, *, what: str = "test double") -> None:
        import threading

        import uvicorn

        self.what = what
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                                    lifespan="off"))
        self.thread = threading.Thread(target=lambda: asyncio.run(self.server.serve()), daemon=True, name=what)

    def start(self, timeout: float = 30.0) -> None:
        self.thread.start()
        wait_until(lambda: self.server.started or not self.thread.is_alive(), timeout=timeout, interval=0.02,
                   what=f"{self.what} serving")
        if not self.server.started:
            raise AssertionError(f"{self.what} stopped before serving (port taken?)")

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


async def read_stream(js: Any, stream: str) -> list[Any]:
    """Every message a JetStream stream holds, oldest first; [] while the stream does not exist or
    is empty (a provisioned, empty stream reports first_seq 0, which is no message)."""
    import nats.js.errors

    try:
        info = await js.stream_info(stream)
    except nats.js.errors.NotFoundError:
        return []
    if info.state.messages == 0:
        return []
    return [await js.get_msg(stream, seq) for seq in range(info.state.first_seq, info.state.last_seq + 1)]


async def eventually(probe: Any, *, timeout: float = 15.0, interval: float = 0.02, what: str = "condition") -> Any:
    """Poll an async (or sync) probe until it returns a truthy value, or fail after `timeout` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    last: Any = None
    while True:
        last = probe()
        if asyncio.iscoroutine(last):
            last = await last
        if last:
            return last
        if loop.time() >= deadline:
            raise AssertionError(f"{what} not reached within {timeout}s (last value: {last!r})")
        await asyncio.sleep(interval)
        interval = min(interval * 1.5, 0.25)
