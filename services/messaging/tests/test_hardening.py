"""Regression tests for the attacks of issue #16 that reached messaging.

* item 2: a deleted or suspended account's still-valid token writes nothing (REST and WebSocket);
  an unverified account reads but does not write (the station's policy).
* item 6: a blocked user cannot reach the blocker by editing (or deleting) an old message.
* item 13: when D deletes the account, E keeps the D-E conversation, E's own messages and the
  notifications E received from D.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import redis.asyncio as aioredis
from messaging_testkit import Cluster, Person, assert_problem, direct, group, send
from sqlalchemy import func, select

from quark_messaging.models import Conversation, Member, Message, Notification
from quark_sdk.auth import UNVERIFIED_WRITER
from quark_sdk.revocation import revoke_subject
from quark_sdk.testing import eventually


async def _revoke(cluster: Cluster, who: Person) -> None:
    """What the auth module does on DELETE /api/v1/auth/me or a suspension."""
    redis = aioredis.from_url(cluster.quark.servers.redis_url)
    try:
        await revoke_subject(redis, who.id, namespace=cluster.quark.namespace)
    finally:
        await redis.aclose()


async def _history(cluster: Cluster, who: Person, chat: str) -> list[tuple[str, str | None]]:
    resp = await cluster.a.client.get(f"/api/v1/chats/{chat}/messages", headers=who.headers)
    assert resp.status_code == 200, resp.text
    return [(m["body"], m["sender_id"]) for m in resp.json()["items"]]


# --------------------------------------------------------------------------- item 2


async def test_a_revoked_account_cannot_create_chats_open_dms_or_send(cluster: Cluster) -> None:
    inst = await (await cluster.start()).serve()
    dora, erin, finn = await cluster.people("dora", "erin", "finn")
    dm = await direct(inst, dora, erin)
    team = await group(inst, dora, erin)
    old = await send(inst, dora, dm, "before")
    socket = await inst.connect(dora)
    await _revoke(cluster, dora)

    c = inst.client
    refused = [
        await c.post(
            "/api/v1/chats", json={"kind": "group", "title": "x", "member_ids": [erin.id]}, headers=dora.headers
        ),
        await c.post("/api/v1/chats/direct", json={"user_id": finn.id}, headers=dora.headers),
        await c.post(f"/api/v1/chats/{dm}/messages", json={"body": "after"}, headers=dora.headers),
        await c.patch(f"/api/v1/messages/{old['id']}", json={"body": "edited after"}, headers=dora.headers),
        await c.delete(f"/api/v1/messages/{old['id']}", headers=dora.headers),
        await c.post(f"/api/v1/chats/{dm}/read", json={"seq": 1}, headers=dora.headers),
        await c.post(f"/api/v1/chats/{dm}/typing", headers=dora.headers),
        await c.patch(f"/api/v1/chats/{team}", json={"title": "renamed"}, headers=dora.headers),
        await c.post(f"/api/v1/chats/{team}/members", json={"user_ids": [finn.id]}, headers=dora.headers),
    ]
    for resp in refused:
        assert assert_problem(resp, 401)["detail"] == "token revoked", resp.request.url

    # The socket opened before the revocation: its next send closes it (1008) and stores nothing.
    await socket.send({"type": "send", "conversation_id": dm, "body": "over the socket", "ref": "s1"})
    assert await socket.closed() == 1008
    assert socket.closed_reason == "token revoked"
    # A new socket is refused at authentication.
    late = await inst.connect(dora, ready=False)
    assert await late.closed() == 1008

    assert await _history(cluster, erin, dm) == [("before", dora.id)]
    notes = (await c.get("/api/v1/notifications", headers=erin.headers)).json()["items"]
    assert all(n["data"].get("excerpt") != "after" for n in notes)
    async with inst.svc.ctx.database().session() as session:
        kept = await session.scalar(select(func.count()).select_from(Member).where(Member.user_id == finn.uuid))
        assert kept == 0  # no chat opened with finn, nobody invited
    # Others still write.
    await send(inst, erin, dm, "still here")


async def test_an_unverified_account_reads_but_does_not_message(cluster: Cluster) -> None:
    inst = await (await cluster.start()).serve()
    vera, walt = await cluster.people("vera", "walt")
    dm = await direct(inst, walt, vera)
    await send(inst, walt, dm, "hello vera")
    token = cluster.quark.user_token(vera.id, username="vera", verified=False)
    unverified = Person(vera.id, "vera", token, cluster.quark.bearer(token))

    assert await _history(cluster, unverified, dm) == [("hello vera", walt.id)]
    resp = await inst.client.post(f"/api/v1/chats/{dm}/messages", json={"body": "hi"}, headers=unverified.headers)
    assert assert_problem(resp, 403)["detail"] == UNVERIFIED_WRITER
    resp = await inst.client.post("/api/v1/chats/direct", json={"user_id": walt.id}, headers=unverified.headers)
    assert_problem(resp, 403)

    socket = await inst.connect(unverified)  # reading live is fine
    answer = await socket.request({"type": "send", "conversation_id": dm, "body": "over the socket"})
    assert (answer["type"], answer["status"], answer["detail"]) == ("error", 403, UNVERIFIED_WRITER)
    assert await _history(cluster, walt, dm) == [("hello vera", walt.id)]


# --------------------------------------------------------------------------- item 6


async def test_a_blocked_user_cannot_reach_the_blocker_by_editing_an_old_message(cluster: Cluster) -> None:
    inst = await (await cluster.start()).serve()
    bea, mal = await cluster.people("bea", "mal")
    dm = await direct(inst, mal, bea)
    old = await send(inst, mal, dm, "an old message")
    await cluster.apply(
        "quark.user.blocked", {"blocker_id": bea.id, "blocked_id": mal.id, "at": datetime.now(UTC).isoformat()}
    )
    watcher = await inst.connect(bea)
    resp = await inst.client.patch(
        f"/api/v1/messages/{old['id']}", json={"body": "you cannot escape"}, headers=mal.headers
    )
    assert assert_problem(resp, 403)["detail"] == "you cannot message this user"
    socket = await inst.connect(mal)
    answer = await socket.request({"type": "edit", "message_id": old["id"], "body": "nor here"})
    assert (answer["type"], answer["status"]) == ("error", 403)
    # Deleting stays possible: it takes the text away from the blocker, it adds nothing.
    resp = await inst.client.delete(f"/api/v1/messages/{old['id']}", headers=mal.headers)
    assert resp.status_code == 204
    await watcher.wait_for("message.deleted")
    assert watcher.of("message.updated") == []
    assert await _history(cluster, bea, dm) == [("", mal.id)]


# --------------------------------------------------------------------------- item 13


async def test_deleting_an_account_keeps_the_other_persons_side(cluster: Cluster) -> None:
    inst = await cluster.start()
    dan, eve = await cluster.people("dan", "eve")
    dm = await direct(inst, dan, eve)
    await send(inst, dan, dm, "from dan")
    await send(inst, eve, dm, "from eve")
    await send(inst, dan, dm, "@eve see this")

    async def mention_and_message() -> list[dict[str, Any]] | None:
        notes = (await inst.client.get("/api/v1/notifications", headers=eve.headers)).json()["items"]
        kinds = {(n["kind"], n["data"].get("seq")) for n in notes}
        return notes if {("mention", 3), ("message", 3)} <= kinds else None

    # A mention (in the message's transaction) and the offline message notification (from the consumer).
    eves_notes = await eventually(mention_and_message, what="eve's notifications from dan")

    await cluster.apply("quark.auth.user_deleted", {"user_id": dan.id, "username": "dan"})

    # Eve keeps the conversation; dan's messages are tombstones from a deleted account, hers are intact.
    mine = (await inst.client.get("/api/v1/chats", headers=eve.headers)).json()["items"]
    assert [c["id"] for c in mine] == [dm]
    assert mine[0]["peer_id"] == dan.id
    items = (await inst.client.get(f"/api/v1/chats/{dm}/messages", headers=eve.headers)).json()["items"]
    assert [(m["body"], m["sender_id"], m["deleted"], m["sender_deleted"]) for m in items] == [
        ("", None, True, True),
        ("from eve", eve.id, False, False),
        ("", None, True, True),
    ]
    # The notifications eve received from dan stay (orphaned: no actor); dan's own are gone.
    after = (await inst.client.get("/api/v1/notifications", headers=eve.headers)).json()["items"]
    assert [n["id"] for n in after] == [n["id"] for n in eves_notes]
    assert all(n["actor_id"] is None and "excerpt" not in n["data"] for n in after)
    async with inst.svc.ctx.database().session() as session:
        for model, col in (
            (Member, Member.user_id),
            (Notification, Notification.user_id),
            (Message, Message.sender_id),
        ):
            assert await session.scalar(select(func.count()).select_from(model).where(col == dan.uuid)) == 0
        assert await session.scalar(select(func.count()).select_from(Conversation)) == 1
    # Nobody can write into it any more: the peer is gone.
    resp = await inst.client.post(f"/api/v1/chats/{dm}/messages", json={"body": "anyone?"}, headers=eve.headers)
    assert_problem(resp, 403)
    # The deletion announced again by the user service changes nothing more.
    await cluster.apply("quark.user.deleted", {"user_id": dan.id})

    async def unchanged() -> bool:
        again = (await inst.client.get(f"/api/v1/chats/{dm}/messages", headers=eve.headers)).json()["items"]
        return [m["body"] for m in again] == ["", "from eve", ""]

    await eventually(unchanged)
