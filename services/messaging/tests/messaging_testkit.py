"""Helpers for the messaging service's tests: running instances (also on a real port for WebSockets), people,
events from other services, and a small WebSocket client that keeps every frame it receives."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import uvicorn
import websockets
from sqlalchemy import select

from quark_messaging.app import module
from quark_messaging.runtime import MessagingRuntime
from quark_sdk.embedded import free_port
from quark_sdk.events import CloudEvent, processed_event_ids
from quark_sdk.outbox import outbox_table
from quark_sdk.testing import QuarkTestEnv, RunningModule, eventually
from quark_sdk.testing import assert_problem as assert_problem  # one definition, re-exported


@dataclass
class Person:
    id: str
    username: str
    token: str
    headers: dict[str, str]

    @property
    def uuid(self) -> uuid.UUID:
        return uuid.UUID(self.id)


@dataclass
class Client:
    """A WebSocket client that collects frames in the background."""

    ws: Any
    frames: list[dict[str, Any]] = field(default_factory=list)
    task: asyncio.Task[None] | None = None
    closed_code: int | None = None
    closed_reason: str | None = None

    def start(self) -> Client:
        self.task = asyncio.create_task(self._read())
        return self

    async def _read(self) -> None:
        try:
            async for raw in self.ws:
                self.frames.append(json.loads(raw))
        except websockets.ConnectionClosed:
            pass
        self.closed_code = self.ws.close_code
        self.closed_reason = self.ws.close_reason

    async def send(self, frame: dict[str, Any]) -> None:
        await self.ws.send(json.dumps(frame))

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [f for f in self.frames if f.get("type") == kind]

    async def wait_for(self, kind: str, pred: Any = None, *, count: int = 1, what: str | None = None) -> list[Any]:
        def probe() -> list[dict[str, Any]] | None:
            got = [f for f in self.of(kind) if pred is None or pred(f)]
            return got if len(got) >= count else None

        result: list[dict[str, Any]] = await eventually(probe, what=what or f"{count} {kind} frame(s)")
        return result

    async def request(self, frame: dict[str, Any]) -> dict[str, Any]:
        """Send a frame with a fresh `ref` and wait for the ack or error answering it."""
        ref = uuid.uuid4().hex[:12]
        await self.send({**frame, "ref": ref})
        got = await eventually(
            lambda: [
                f for f in self.frames if f.get("ref") == ref and f["type"] in ("ack", "error", "resume.done", "pong")
            ],
            what=f"answer to {frame['type']}",
        )
        return dict(got[0])

    async def closed(self) -> int | None:
        assert self.task is not None
        await asyncio.wait_for(self.task, 15)
        return self.closed_code

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.ws.close()
        if self.task is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.task, 5)


class Instance:
    """One running messaging instance, with its app also served by uvicorn on a real port for WebSockets."""

    def __init__(self, quark: QuarkTestEnv, svc: RunningModule) -> None:
        self.quark = quark
        self.svc = svc
        self.client: httpx.AsyncClient = svc.client
        self.port = 0
        self._server: uvicorn.Server | None = None
        self._task: asyncio.Task[None] | None = None
        self.clients: list[Client] = []

    @property
    def rt(self) -> MessagingRuntime:
        return self.svc.ctx.runtime

    async def serve(self) -> Instance:
        """The same app (lifespan already running) on 127.0.0.1:<free port>."""
        self.port = free_port()
        config = uvicorn.Config(
            self.svc.app, host="127.0.0.1", port=self.port, lifespan="off", log_level="warning", ws_ping_interval=None
        )
        self._server = uvicorn.Server(config)
        self._task = asyncio.create_task(self._server.serve())
        await eventually(lambda: self._server is not None and self._server.started, what="uvicorn started")
        return self

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/api/v1/messages/ws"

    async def connect(
        self,
        who: Person | None,
        *,
        via: str = "protocol",
        origin: str | None = None,
        token: str | None = None,
        ready: bool = True,
        **kw: Any,
    ) -> Client:
        """Open a WebSocket as `who`, authenticated by subprotocol or first frame; waits for `ready`."""
        tok = token if token is not None else (who.token if who else "")
        protocols = ["quark.v1", f"bearer.{tok}"] if via == "protocol" else ["quark.v1"]
        headers = {"Origin": origin} if origin else None
        ws = await websockets.connect(
            self.ws_url,
            subprotocols=protocols,
            additional_headers=headers,  # type: ignore[list-item]
            open_timeout=10,
            **kw,
        )
        client = Client(ws)
        if via == "frame":
            await ws.send(json.dumps({"type": "auth", "token": tok}))
        client.start()
        self.clients.append(client)
        if ready:
            await client.wait_for("ready")
        return client

    async def stop_serving(self) -> None:
        for c in self.clients:
            await c.close()
        if self._server is not None:
            self._server.should_exit = True
            if self._task is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(self._task, 10)


class Cluster:
    """The instances of one test (they share the database, NATS namespace and Redis space) and its people."""

    def __init__(self, quark: QuarkTestEnv) -> None:
        self.quark = quark
        self.instances: list[Instance] = []

    async def start(self, *, database_url: str | None = None, **settings: Any) -> Instance:
        if database_url is None and self.instances:
            database_url = self.instances[0].svc.settings.database_url
        if database_url is not None:
            settings["database_url"] = database_url
        settings.setdefault("write_rate_limit", 100_000)
        settings.setdefault("message_rate_limit", 100_000)
        svc = await self.quark.start(module, **settings)
        for runner in svc.ctx.consumers:
            await eventually(lambda r=runner: r.ready.is_set(), what="consumer subscribed")
        inst = Instance(self.quark, svc)
        await eventually(lambda: inst.rt.hub.subscribed.is_set(), what="delivery subject subscribed")
        self.instances.append(inst)
        return inst

    @property
    def a(self) -> Instance:
        return self.instances[0]

    def person(self, username: str, *, ttl: int = 900) -> Person:
        uid = str(uuid.uuid4())
        token = self.quark.user_token(uid, username=username, ttl=ttl)
        return Person(uid, username, token, self.quark.bearer(token))

    async def people(self, *names: str) -> list[Person]:
        """People whose names messaging knows (as if the user service had announced their profiles)."""
        out = [self.person(n) for n in names]
        for p in out:
            await self.apply("quark.user.profile_created", {"user_id": p.id, "username": p.username})
        return out

    async def emit(self, type_name: str, data: dict[str, Any]) -> str:
        """Publish a raw CloudEvent (as another service would) into this test's namespace."""
        event = CloudEvent(id=str(uuid.uuid4()), source="quark/test", type=type_name, time=datetime.now(UTC), data=data)
        bus = self.a.svc.ctx.bus
        assert bus is not None
        await bus.publish(event)
        return event.id

    async def applied(self, event_id: str, consumer: str) -> None:
        async def probe() -> bool:
            async with self.a.svc.ctx.database().session() as session:
                return event_id in await processed_event_ids(session, f"messaging-{consumer}")

        await eventually(probe, what=f"event {event_id} applied by {consumer}")

    async def apply(self, type_name: str, data: dict[str, Any], consumer: str = "replica") -> str:
        eid = await self.emit(type_name, data)
        await self.applied(eid, consumer)
        return eid

    async def published(self, type_name: str) -> list[dict[str, Any]]:
        async with self.a.svc.ctx.database().session() as session:
            rows = (
                await session.execute(
                    select(outbox_table.c.body).where(outbox_table.c.type == type_name).order_by(outbox_table.c.seq)
                )
            ).all()
        return [json.loads(r.body)["data"] for r in rows]

    async def close(self) -> None:
        for inst in self.instances:
            await inst.stop_serving()


# -- REST shortcuts ------------------------------------------------------------------------


async def direct(inst: Instance, a: Person, b: Person) -> str:
    resp = await inst.client.post("/api/v1/chats/direct", json={"user_id": b.id}, headers=a.headers)
    assert resp.status_code in (200, 201), resp.text
    return str(resp.json()["id"])


async def group(inst: Instance, owner: Person, *members: Person, kind: str = "group", title: str = "Team") -> str:
    resp = await inst.client.post(
        "/api/v1/chats",
        json={"kind": kind, "title": title, "member_ids": [m.id for m in members]},
        headers=owner.headers,
    )
    assert resp.status_code == 201, resp.text
    return str(resp.json()["id"])


async def send(inst: Instance, who: Person, chat: str, body: str = "hi", **extra: Any) -> dict[str, Any]:
    resp = await inst.client.post(f"/api/v1/chats/{chat}/messages", json={"body": body, **extra}, headers=who.headers)
    assert resp.status_code in (200, 201), resp.text
    return dict(resp.json())


