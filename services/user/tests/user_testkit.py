"""Helpers for the user service's tests: accounts made the way production makes them (auth events)."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
from sqlalchemy import func, select, text

from quark_sdk.events import CloudEvent, stream_for, subject_for
from quark_sdk.outbox import outbox_table
from quark_sdk.testing import QuarkTestEnv, RunningModule, eventually
from quark_sdk.testing import assert_problem as assert_problem  # one definition, re-exported
from quark_user.app import module

API = "/api/v1/users"
DURABLES = {"auth": "user-accounts", "media": "user-avatars", "moderation": "user-accounts"}
TABLES = ("profiles", "follows", "follow_requests", "blocks", "mutes", "activity", "media_assets")


@dataclass
class Account:
    user_id: uuid.UUID
    username: str
    token: str
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return str(self.user_id)


class UserHarness:
    """One running user service plus ways to feed it auth/media events and look inside."""

    def __init__(self, quark: QuarkTestEnv, svc: RunningModule) -> None:
        self.quark = quark
        self.svc = svc
        self.client: httpx.AsyncClient = svc.client

    # -- events in ---------------------------------------------------------------------------

    async def publish(self, type_name: str, data: dict[str, Any], *, event_id: str | None = None,
                      msg_id: str | None = None) -> CloudEvent:
        """Publish a CloudEvent as another service would. `msg_id` overrides the JetStream dedupe id,
        which is how a redelivery outside the duplicate window is simulated."""
        bus = self.svc.ctx.bus
        assert bus is not None
        event = CloudEvent(id=event_id or str(uuid.uuid4()), source=f"quark/{type_name.split('.')[1]}",
                           type=type_name, time=datetime.now(UTC), data=data)
        await bus.ensure_stream(type_name.split(".")[1])
        await bus.js.publish(subject_for(type_name, bus.namespace), event.to_bytes(),
                             headers={"Nats-Msg-Id": msg_id or event.id})
        return event

    async def consumed(self, domain: str = "auth") -> None:
        """Wait until the service's consumer has acknowledged everything in the domain's stream."""
        bus = self.svc.ctx.bus
        assert bus is not None
        stream = stream_for(domain, bus.namespace)

        async def done() -> bool:
            info = await bus.js.stream_info(stream)
            try:
                consumer = await bus.js.consumer_info(stream, DURABLES[domain])
            except Exception:
                return False
            return (consumer.ack_floor.stream_seq >= info.state.last_seq and consumer.num_ack_pending == 0
                    and consumer.num_pending == 0)

        await eventually(done, what=f"{domain} events consumed")

    async def register(self, username: str, *, display_name: str | None = None, roles: tuple[str, ...] = ("user",),
                       user_id: uuid.UUID | None = None) -> Account:
        uid = user_id or uuid.uuid4()
        await self.publish("quark.auth.user_registered", {
            "user_id": str(uid), "username": username, "email": f"{username}@example.com",
            "display_name": display_name, "roles": list(roles), "created_at": datetime.now(UTC).isoformat(),
        })
        await self.consumed("auth")
        token = self.quark.user_token(str(uid), username=username, roles=roles)
        return Account(uid, username, token, self.quark.bearer(token))

    async def accounts(self, *names: str, **kw: Any) -> list[Account]:
        return [await self.register(n, **kw) for n in names]

    # -- HTTP shortcuts ----------------------------------------------------------------------

    async def get(self, path: str, who: Account | None = None, **kw: Any) -> httpx.Response:
        return await self.client.get(API + path, headers=who.headers if who else None, **kw)

    async def post(self, path: str, who: Account | None = None, **kw: Any) -> httpx.Response:
        return await self.client.post(API + path, headers=who.headers if who else None, **kw)

    async def patch(self, path: str, who: Account | None = None, **kw: Any) -> httpx.Response:
        return await self.client.patch(API + path, headers=who.headers if who else None, **kw)

    async def delete(self, path: str, who: Account | None = None, **kw: Any) -> httpx.Response:
        return await self.client.delete(API + path, headers=who.headers if who else None, **kw)

    async def profile(self, username: str, who: Account | None = None) -> dict[str, Any]:
        resp = await self.get(f"/{username}", who)
        assert resp.status_code == 200, resp.text
        return dict(resp.json())

    async def all_pages(self, path: str, who: Account | None = None, *, limit: int = 2) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        cursor = None
        while True:
            params: dict[str, Any] = {"limit": limit}
            if cursor:
                params["cursor"] = cursor
            resp = await self.get(path, who, params=params)
            assert resp.status_code == 200, resp.text
            body = resp.json()
            items.extend(body["items"])
            cursor = body["next_cursor"]
            if cursor is None:
                return items

    # -- looking inside -----------------------------------------------------------------------

    async def published(self, type_name: str | None = None) -> list[dict[str, Any]]:
        """Events this service wrote to its outbox (in order), as their `data`."""
        async with self.svc.ctx.database().session() as session:
            stmt = select(outbox_table.c.type, outbox_table.c.body).order_by(outbox_table.c.seq)
            if type_name:
                stmt = stmt.where(outbox_table.c.type == type_name)
            rows = (await session.execute(stmt)).all()
        return [dict(json.loads(body)["data"], _type=t) for t, body in rows]

    async def snapshot(self) -> dict[str, Any]:
        """Every row of every table of the service (and the outbox size): proves "nothing changed"."""
        out: dict[str, Any] = {}
        async with self.svc.ctx.database().session() as session:
            for table in TABLES:
                rows = (await session.execute(text(f"SELECT * FROM {table} ORDER BY 1, 2"))).all()  # noqa: S608
                out[table] = [tuple(r) for r in rows]
            out["outbox"] = await session.scalar(select(func.count()).select_from(outbox_table))
        return out

    async def graph_consistent(self) -> None:
        """Every profile's counters equal its actual edges."""
        async with self.svc.ctx.database().session() as session:
            bad = (await session.execute(text("""
                SELECT p.username, p.followers_count, p.following_count,
                       (SELECT count(*) FROM follows f WHERE f.followee_id = p.user_id) AS followers,
                       (SELECT count(*) FROM follows f WHERE f.follower_id = p.user_id) AS following
                FROM profiles p
            """))).all()
        mismatched = [r for r in bad if (r[1], r[2]) != (r[3], r[4])]
        assert not mismatched, mismatched


async def start(quark: QuarkTestEnv, **settings: Any) -> UserHarness:
    return UserHarness(quark, await quark.start(module, **settings))


