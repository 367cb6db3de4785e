"""Helpers for the cross-service security suite: one table of services, and a way to run each one.

Adding a service to every security test is one line in `SERVICES`. A service whose package is not
installed (or does not import) is skipped with the reason, so the table can name services that are
still being built.
"""

from __future__ import annotations

import asyncio
import base64
import importlib
import json
import sys
import threading
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from quark_sdk.app import QuarkModule
from quark_sdk.events import CloudEvent, stream_for, subject_for
from quark_sdk.testing import QuarkTestEnv, RunningModule, eventually
from quark_sdk.testing import assert_problem as assert_problem  # one definition, re-exported

REPO = Path(__file__).resolve().parents[2]
T = TypeVar("T")


@dataclass(frozen=True)
class ServiceSpec:
    """How the security suite runs one service."""

    name: str
    module_ref: str  # "package.app:module"
    protected: str  # a GET route that needs a user token (the JWT suite's target)
    settings: dict[str, Any] = field(default_factory=dict)
    own_tokens: bool = False  # auth signs and checks its own tokens (and their sessions)
    needs_data_dir: bool = False

    def module(self) -> QuarkModule:
        pkg, _, attr = self.module_ref.partition(":")
        mod: QuarkModule = getattr(importlib.import_module(pkg), attr)
        return mod

    def available(self) -> str | None:
        """None when the service imports; otherwise why it is skipped."""
        try:
            self.module()
        except Exception as exc:  # a package still being built may fail in any way
            return f"{self.module_ref} not importable: {type(exc).__name__}: {exc}"
        return None


# One line per service. Limits that would get in the way of fuzzing are raised here; the limit tests set
# them explicitly.
SERVICES: list[ServiceSpec] = [
    ServiceSpec("hub", "quark_hub.app:module", "/api/v1/hub/clients",
                {"self_dock": False, "register_rate_limit": 100_000}, needs_data_dir=True),
    ServiceSpec("auth", "quark_auth.app:module", "/api/v1/auth/me",
                {"bcrypt_rounds": 4, "login_ip_limit": 100_000, "register_ip_limit": 100_000,
                 "email_request_ip_limit": 100_000}, own_tokens=True, needs_data_dir=True),
    ServiceSpec("user", "quark_user.app:module", "/api/v1/users/me"),
    ServiceSpec("blog", "quark_blog.app:module", "/api/v1/posts/mine", {"write_rate_limit": 100_000}),
    ServiceSpec("media", "quark_media.app:module", "/api/v1/media", needs_data_dir=True),
    ServiceSpec("messaging", "quark_messaging.app:module", "/api/v1/chats"),
    ServiceSpec("ai", "quark_ai.app:module", "/api/v1/ai/drafts"),
]


def service_params() -> list[Any]:
    """`pytest.param` per service; the ones that do not import are skipped with the reason."""
    out = []
    for spec in SERVICES:
        reason = spec.available()
        marks = [pytest.mark.skip(reason=reason)] if reason else []
        out.append(pytest.param(spec, id=spec.name, marks=marks))
    return out


def spec(name: str) -> ServiceSpec:
    return next(s for s in SERVICES if s.name == name)


# -- a running service with users -----------------------------------------------------------------------


@dataclass
class User:
    id: str
    username: str
    token: str
    roles: tuple[str, ...] = ("user",)

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


PASSWORD = "correct horse battery"


@dataclass
class Running:
    """One running service of the table, able to make users it trusts."""

    spec: ServiceSpec
    svc: RunningModule
    quark: QuarkTestEnv

    @property
    def client(self) -> httpx.AsyncClient:
        return self.svc.client

    async def user(self, username: str | None = None, *, roles: tuple[str, ...] = ("user",)) -> User:
        """A user this service knows and trusts, made the way production makes one."""
        username = username or "u" + uuid.uuid4().hex[:10]
        if self.spec.own_tokens:
            return await self._auth_user(username, roles)
        uid = str(uuid.uuid4())
        if self.spec.name == "user":
            await self.publish("quark.auth.user_registered", {
                "user_id": uid, "username": username, "email": f"{username}@example.com", "display_name": None,
                "roles": list(roles), "created_at": datetime.now(UTC).isoformat()})
            await eventually(lambda: self._profile_exists(uid), what=f"profile {username}")
        elif self.spec.name == "blog":
            await self.publish("quark.user.profile_created", {"user_id": uid, "username": username,
                                                              "display_name": username.title()})
            await eventually(lambda: self._blog_author_exists(uid), what=f"blog author {username}")
        return User(uid, username, self.quark.user_token(uid, username=username, roles=roles), roles)

    async def _auth_user(self, username: str, roles: tuple[str, ...]) -> User:
        resp = await self.client.post("/api/v1/auth/register", json={
            "username": username, "email": f"{username}@example.com", "password": PASSWORD})
        assert resp.status_code == 201, resp.text
        uid = resp.json()["id"]
        if "admin" in roles:
            await self.sql("INSERT INTO user_roles (user_id, role) VALUES (:id, 'admin') ON CONFLICT DO NOTHING",
                           id=uuid.UUID(uid))
        tokens = await self.login(username)
        return User(uid, username, tokens["access_token"], roles)

    async def login(self, username: str, password: str = PASSWORD) -> dict[str, Any]:
        resp = await self.client.post("/api/v1/auth/login", json={"login": username, "password": password})
        assert resp.status_code == 200, resp.text
        body: dict[str, Any] = resp.json()
        return body

    async def publish(self, type_name: str, data: dict[str, Any]) -> None:
        """Publish a CloudEvent into this test's namespace, as the producing service would."""
        bus = self.svc.ctx.bus
        assert bus is not None
        event = CloudEvent(id=str(uuid.uuid4()), source=f"quark/{type_name.split('.')[1]}", type=type_name,
                           time=datetime.now(UTC), data=data)
        await bus.ensure_stream(type_name.split(".")[1])
        await bus.js.publish(subject_for(type_name, bus.namespace), event.to_bytes(),
                             headers={"Nats-Msg-Id": event.id})

    async def sql(self, query: str, **params: Any) -> list[Any]:
        from sqlalchemy import text

        async with self.svc.ctx.database().session() as session, session.begin():
            result = await session.execute(text(query), params)
            return list(result.all()) if result.returns_rows else []

    async def _profile_exists(self, uid: str) -> bool:
        return bool(await self.sql("SELECT 1 FROM profiles WHERE user_id = :id", id=uuid.UUID(uid)))

    async def _blog_author_exists(self, uid: str) -> bool:
        return bool(await self.sql("SELECT 1 FROM authors WHERE user_id = :id", id=uid))

    def sign(self, claims: dict[str, Any], *, hub: bool = False) -> str:
        """Sign claims with the keys this service trusts (auth's own keys for auth)."""
        if self.spec.own_tokens:

            return self.svc.ctx.runtime.keys.sign(claims)
        return (self.quark.hub_keys if hub else self.quark.keys).sign(claims)

    def signing_key(self) -> Any:
        """The SigningKey this service trusts (to sign what `SigningKeySet.sign` refuses to, e.g. no exp)."""
        if self.spec.own_tokens:

            return self.svc.ctx.runtime.keys.keyset.active
        return self.quark.keys.active

    def sign_raw(self, claims: dict[str, Any]) -> str:
        import jwt

        key = self.signing_key()
        return jwt.encode(claims, key.private_key, algorithm=key.algorithm, headers={"kid": key.kid})

    def trusted_kid(self) -> str:
        if self.spec.own_tokens:

            return str(self.svc.ctx.runtime.keys.active_kid)
        return self.quark.keys.active.kid

    def claims(self, sub: str, **overrides: Any) -> dict[str, Any]:
        import time

        now = int(time.time())
        base = {"sub": sub, "username": "x", "roles": ["user"], "permissions": [], "iss": "quark-auth",
                "aud": self.svc.settings.token_audience, "iat": now, "exp": now + 600, "jti": uuid.uuid4().hex,
                "token_use": "access"}
        base.update(overrides)
        return {k: v for k, v in base.items() if v is not None}


async def start(quark: QuarkTestEnv, spec: ServiceSpec, tmp_path: Path, **overrides: Any) -> Running:
    settings = dict(spec.settings)
    if spec.needs_data_dir:
        settings["data_dir"] = tmp_path / f"{spec.name}-data"
    settings.update(overrides)
    svc = await quark.start(spec.module(), **settings)
    for runner in getattr(svc.ctx, "consumers", []):
        await eventually(lambda r=runner: r.ready.is_set(), what="consumer subscribed")
    if spec.name == "ai":
        # Approving a draft creates a blog draft over HTTP: give the ai service a real blog to talk to.
        from quark_blog.app import module as blog_module

        blog = await quark.start(blog_module, write_rate_limit=100_000)
        svc.ctx.runtime.blog_http = blog.client
    return Running(spec, svc, quark)


def stream_name(domain: str, namespace: str) -> str:
    return stream_for(domain, namespace)


# -- JWT forging ------------------------------------------------------------------------------------------


def b64(data: dict[str, Any] | bytes) -> str:
    raw = data if isinstance(data, bytes) else json.dumps(data, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def unb64(part: str) -> dict[str, Any]:
    out: dict[str, Any] = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    return out


# -- problem responses ------------------------------------------------------------------------------------




# -- running a service on its own event loop (for the synchronous schemathesis runner) -------------------


class LoopThread:
    """An asyncio loop in a daemon thread: services live there while synchronous code drives them."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="quark-security-loop", daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 120) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


class ASGIBridge:
    """An ASGI app that runs each request on the service's own loop (where its pools live).

    Schemathesis drives ASGI apps from its own event-loop thread; the service's database pool, NATS
    and Redis clients belong to the loop the service was started on. The bridge forwards the call
    there and forwards `receive`/`send` back. The lifespan was already run by `QuarkTestEnv.start`,
    so lifespan messages are acknowledged without touching the app.
    """

    def __init__(self, app: Any, loop: asyncio.AbstractEventLoop) -> None:
        self.app = app
        self.loop = loop

    async def __call__(self, scope: dict[str, Any], receive: Callable[[], Awaitable[Any]],
                       send: Callable[[Any], Awaitable[None]]) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        caller = asyncio.get_running_loop()

        async def receive_there() -> Any:
            return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(_call(receive), caller))

        async def send_there(message: Any) -> None:
            await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(_call(send, message), caller))

        await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(
            self.app(scope, receive_there, send_there), self.loop))


async def _call(fn: Callable[..., Awaitable[Any]], *args: Any) -> Any:
    return await fn(*args)


def add_paths() -> None:
    """Other suites' testkits are importable by name (never their conftest)."""
    for rel in ("services/blog/tests",):
        path = str(REPO / rel)
        if path not in sys.path:
            sys.path.insert(0, path)
