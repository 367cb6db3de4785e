"""Helpers for the blog service's tests (imported by conftest.py and the test modules)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx

from quark_blog.runtime import BlogRuntime
from quark_sdk.events import CloudEvent, processed_event_ids
from quark_sdk.testing import QuarkTestEnv, RunningModule, eventually
from quark_sdk.testing import assert_problem as assert_problem  # one definition, re-exported


@dataclass
class Person:
    id: str
    username: str
    headers: dict[str, str]


class Blog:
    """One running blog module and the people using it."""

    def __init__(self, quark: QuarkTestEnv, svc: RunningModule) -> None:
        self.quark = quark
        self.svc = svc
        self.client: httpx.AsyncClient = svc.client

    @property
    def rt(self) -> BlogRuntime:
        return self.svc.ctx.runtime

    def person(self, username: str, *, roles: tuple[str, ...] = ("user",)) -> Person:
        uid = str(uuid.uuid4())
        token = self.quark.user_token(uid, username=username, roles=roles)
        return Person(uid, username, self.quark.bearer(token))

    async def emit(self, type_name: str, data: dict[str, Any], *, event_id: str | None = None) -> str:
        """Publish a raw CloudEvent (as another service would) into this test's namespace."""
        event = CloudEvent(
            id=event_id or str(uuid.uuid4()), source="quark/test", type=type_name, time=datetime.now(UTC), data=data
        )
        assert self.svc.ctx.bus is not None
        await self.svc.ctx.bus.publish(event)
        return event.id

    async def applied(self, event_id: str, consumer: str = "replica") -> None:
        async def probe() -> bool:
            async with self.svc.ctx.database().session() as session:
                return event_id in await processed_event_ids(session, f"blog-{consumer}")

        await eventually(probe, what=f"event {event_id} applied by {consumer}")

    async def apply(self, type_name: str, data: dict[str, Any], *, event_id: str | None = None) -> str:
        eid = await self.emit(type_name, data, event_id=event_id)
        await self.applied(eid)
        return eid

    async def register(self, p: Person) -> None:
        await self.apply(
            "quark.user.profile_created", {"user_id": p.id, "username": p.username, "display_name": p.username.title()}
        )

    async def follow(self, follower: Person, followee: Person) -> None:
        await self.apply(
            "quark.user.followed",
            {
                "follower_id": follower.id,
                "follower_username": follower.username,
                "followee_id": followee.id,
                "followee_username": followee.username,
                "at": datetime.now(UTC).isoformat(),
            },
        )

    async def post(self, p: Person, title: str = "Hello", body: str = "Some *text*.", **extra: Any) -> dict[str, Any]:
        resp = await self.client.post(
            "/api/v1/posts", json={"title": title, "body": body, "publish": True, **extra}, headers=p.headers
        )
        assert resp.status_code == 201, resp.text
        return resp.json()

    async def home(self, p: Person, **params: Any) -> list[str]:
        resp = await self.client.get("/api/v1/feed/home", headers=p.headers, params=params)
        assert resp.status_code == 200, resp.text
        return [i["id"] for i in resp.json()["items"]]

    async def fanned_out(self, post_id: str) -> None:
        """Wait until the post's own event went through the fan-out consumer (outbox → NATS → consumer)."""

        async def probe() -> bool:
            async with self.svc.ctx.database().session() as session:
                ids = await processed_event_ids(session, "blog-fanout")
            return len(ids) > 0 and await self._outbox_all_consumed(ids)

        await eventually(probe, what=f"post {post_id} fanned out")

    async def _outbox_all_consumed(self, consumed: set[str]) -> bool:
        from sqlalchemy import select

        from quark_sdk.outbox import outbox_table

        async with self.svc.ctx.database().session() as session:
            rows = await session.execute(select(outbox_table.c.id, outbox_table.c.type))
            wanted = {
                r.id
                for r in rows
                if r.type.startswith("quark.post.") and r.type not in ("quark.post.reacted", "quark.post.reported")
            }
        return wanted <= consumed


