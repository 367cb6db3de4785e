"""Helpers for the moderation module's tests: publish what the owning modules publish, act as people."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx

from quark_sdk.events import CloudEvent, processed_event_ids
from quark_sdk.testing import QuarkTestEnv, RunningModule, eventually
from quark_sdk.testing import assert_problem as assert_problem  # one definition, re-exported


@dataclass
class Person:
    id: str
    username: str
    headers: dict[str, str]


class Moderation:
    """One running moderation module, the events other modules would send it, and the people using it."""

    def __init__(self, quark: QuarkTestEnv, svc: RunningModule) -> None:
        self.quark = quark
        self.svc = svc
        self.client: httpx.AsyncClient = svc.client

    def person(self, username: str, *, roles: tuple[str, ...] = ("user",)) -> Person:
        uid = str(uuid.uuid4())
        return Person(uid, username, self.quark.bearer(self.quark.user_token(uid, username=username, roles=roles)))

    async def emit(self, type_name: str, data: dict[str, Any], *, event_id: str | None = None,
                   consumer: str = "intake", wait: bool = True) -> str:
        """Publish a CloudEvent as its producer would, and wait until `consumer` applied it."""
        event = CloudEvent(id=event_id or str(uuid.uuid4()), source="quark/test", type=type_name,
                           time=datetime.now(UTC), data=data)
        assert self.svc.ctx.bus is not None
        await self.svc.ctx.bus.publish(event)
        if not wait:
            return event.id

        async def probe() -> bool:
            async with self.svc.ctx.database().session() as session:
                return event.id in await processed_event_ids(session, f"moderation-{consumer}")

        await eventually(probe, what=f"event {event.id} applied by {consumer}")
        return event.id

    async def report_post(self, reporter: Person, post_id: str, author_id: str, *, reason: str = "spam",
                          target_type: str = "post", title: str = "A post") -> str:
        return await self.emit("quark.post.reported", {
            "report_id": str(uuid.uuid4()), "target_type": target_type, "target_id": post_id,
            "reporter_id": reporter.id, "reason": reason, "author_id": author_id, "title": title,
            "excerpt": "the reported words"})

    async def flag(self, target_id: str, *, author_id: str | None, score: float = 0.93, target_type: str = "post",
                   run_id: str | None = None) -> str:
        return await self.emit("quark.ai.moderation_flagged", {
            "target_type": target_type, "target_id": target_id, "score": score, "labels": ["toxic"],
            "reason": "insult", "run_id": run_id or str(uuid.uuid4()), "author_id": author_id,
            "preview": "you are all idiots"})

    async def report_message(self, reporter: Person, message_id: str, author_id: str) -> str:
        now = datetime.now(UTC).isoformat()
        return await self.emit("quark.message.reported", {
            "report_id": str(uuid.uuid4()), "chat_id": str(uuid.uuid4()), "message_id": message_id,
            "author_id": author_id, "reporter_id": reporter.id, "reason": "harassment",
            "thread": [
                {"message_id": "1", "sender_id": reporter.id, "body": "hi", "created_at": now},
                {"message_id": message_id, "sender_id": author_id, "body": "threat", "created_at": now,
                 "reported": True},
            ]})

    async def queue(self, who: Person, **params: Any) -> list[dict[str, Any]]:
        r = await self.client.get("/api/v1/moderation/cases", params=params, headers=who.headers)
        assert r.status_code == 200, r.text
        items: list[dict[str, Any]] = r.json()["items"]
        return items

    async def decide(self, who: Person, case_id: str, action: str, *, reason: str = "against the rules",
                     **extra: Any) -> httpx.Response:
        return await self.client.post(f"/api/v1/moderation/cases/{case_id}/decisions",
                                      json={"action": action, "reason": reason, **extra}, headers=who.headers)
