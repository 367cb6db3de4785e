"""Helpers for the auth service's tests (imported by conftest.py and the test modules)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
from sqlalchemy import text

from quark_auth.accounts import create_admin
from quark_auth.runtime import AuthRuntime
from quark_sdk.events import CloudEvent, dead_letter_stream, stream_for, subject_for
from quark_sdk.testing import QuarkTestEnv, RunningModule, eventually
from quark_sdk.testing import assert_problem as assert_problem  # one definition, re-exported

API = "/api/v1/auth"
PASSWORD = "correct horse battery"

# Fast and permissive defaults; a test that exercises a limit sets it explicitly.
FAST: dict[str, Any] = {"bcrypt_rounds": 4, "login_ip_limit": 10_000, "register_ip_limit": 10_000,
                        "email_request_ip_limit": 10_000}


class FakeClock:
    """Injectable time: starts now, moves only when told."""

    def __init__(self, start: float) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Auth:
    """A running auth service plus the calls every test needs."""

    svc: RunningModule
    quark: QuarkTestEnv

    @property
    def client(self) -> httpx.AsyncClient:
        return self.svc.client

    @property
    def rt(self) -> AuthRuntime:
        return self.svc.ctx.runtime

    async def register(self, username: str = "alice", email: str | None = None, password: str = PASSWORD,
                       **extra: Any) -> dict[str, Any]:
        resp = await self.client.post(f"{API}/register", json={
            "username": username, "email": email or f"{username}@example.com", "password": password, **extra})
        assert resp.status_code == 201, resp.text
        body: dict[str, Any] = resp.json()
        return body

    async def login(self, login: str = "alice", password: str = PASSWORD, **headers: str) -> dict[str, Any]:
        resp = await self.client.post(f"{API}/login", json={"login": login, "password": password}, headers=headers)
        assert resp.status_code == 200, resp.text
        body: dict[str, Any] = resp.json()
        return body

    async def user(self, username: str = "alice", **extra: Any) -> tuple[dict[str, Any], dict[str, str]]:
        """Register and log in; returns the token response and the Authorization header."""
        await self.register(username, **extra)
        tokens = await self.login(username)
        return tokens, bearer(tokens["access_token"])

    async def admin(self, username: str = "root") -> tuple[dict[str, Any], dict[str, str]]:
        """An admin made as `quark create-admin --force` makes one, logged in."""
        async with self.svc.ctx.database().session() as session:
            await create_admin(session, self.rt, username=username, email=f"{username}@example.com",
                                       password=PASSWORD, force=True)
        tokens = await self.login(username)
        return tokens, bearer(tokens["access_token"])

    async def sql(self, query: str, **params: Any) -> list[Any]:
        async with self.svc.ctx.database().session() as session:
            return list((await session.execute(text(query), params)).all())

    async def outbox(self) -> list[CloudEvent]:
        rows = await self.sql("SELECT body FROM quark_outbox ORDER BY seq")
        return [CloudEvent.from_bytes(r.body.encode()) for r in rows]

    async def outbox_types(self) -> list[str]:
        return [e.type for e in await self.outbox()]

    async def emails(self, kind: str | None = None) -> list[dict[str, Any]]:
        return [e.data for e in await self.outbox()
                if e.type == "quark.auth.email_requested" and (kind is None or e.data["kind"] == kind)]

    async def published(self, count: int) -> list[CloudEvent]:
        """The events in this test's QUARK_AUTH stream on NATS, once there are at least `count`."""
        bus = self.svc.ctx.bus
        assert bus is not None
        stream = stream_for("auth", self.svc.settings.event_namespace)

        async def enough() -> int:
            try:
                info = await bus.js.stream_info(stream)
            except Exception:
                return 0
            return int(info.state.messages) if info.state.messages >= count else 0

        total = await eventually(enough, what=f"{count} events on {stream}")
        return [CloudEvent.from_bytes((await bus.js.get_msg(stream, seq)).data or b"") for seq in range(1, total + 1)]


    async def publish(self, type_name: str, data: dict[str, Any], *, at: datetime | None = None) -> CloudEvent:
        """Publish a CloudEvent on NATS as another service's relay would (e.g. the user service)."""
        bus = self.svc.ctx.bus
        assert bus is not None
        domain = type_name.split(".")[1]
        event = CloudEvent(id=str(uuid.uuid4()), source=f"quark/{domain}", type=type_name,
                           time=at or datetime.now(UTC), data=data)
        await bus.ensure_stream(domain)
        await bus.js.publish(subject_for(type_name, bus.namespace), event.to_bytes(),
                             headers={"Nats-Msg-Id": event.id})
        return event

    async def consumed(self, domain: str = "user", durable: str = "auth-suspensions") -> None:
        """Wait until auth's consumer has acknowledged (or dead-lettered) everything in the domain's stream."""
        bus = self.svc.ctx.bus
        assert bus is not None
        stream = stream_for(domain, bus.namespace)

        async def done() -> bool:
            info = await bus.js.stream_info(stream)
            try:
                consumer = await bus.js.consumer_info(stream, durable)
            except Exception:
                return False
            return (consumer.ack_floor.stream_seq >= info.state.last_seq and consumer.num_ack_pending == 0
                    and consumer.num_pending == 0)

        await eventually(done, what=f"{domain} events consumed")

    async def dead_letters(self) -> int:
        bus = self.svc.ctx.bus
        assert bus is not None
        try:
            return int((await bus.js.stream_info(dead_letter_stream(bus.namespace))).state.messages)
        except Exception:
            return 0


def problem(resp: httpx.Response, status: int, code: str | None = None) -> dict[str, Any]:
    """`assert_problem`, and the problem `type` ends with `code` when given."""
    body = assert_problem(resp, status)
    if code is not None:
        assert body["type"].endswith("/" + code), body
    return body


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}






def uid() -> str:
    return uuid.uuid4().hex[:8]
