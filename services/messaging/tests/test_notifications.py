"""Notifications from events and messages: stored, listed, marked read, pushed live; account deletion."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from messaging_testkit import Cluster, Person, assert_problem, direct, group, send
from sqlalchemy import func, select

from quark_messaging.models import Block, Member, Message, Notification
from quark_sdk.testing import eventually


async def notes(cluster: Cluster, who: Person, **params: Any) -> list[dict[str, Any]]:
    resp = await cluster.a.client.get("/api/v1/notifications", params=params, headers=who.headers)
    assert resp.status_code == 200, resp.text
    return list(resp.json()["items"])


async def counted(
    cluster: Cluster, who: Person, *expected: tuple[str, int], **params: Any
) -> list[dict[str, Any]] | None:
    """`who`'s notifications once they are exactly `expected` (kind, count), newest first; else None."""
    found = await notes(cluster, who, **params)
    return found if [(n["kind"], n["count"]) for n in found] == list(expected) else None


def comment(post_author: Person, author: Person, body: str = "Nice post", **extra: Any) -> dict[str, Any]:
    return {
        "comment_id": str(uuid.uuid4()),
        "post_id": "p1",
        "post_author_id": post_author.id,
        "author_id": author.id,
        "author_username": author.username,
        "parent_id": None,
        "body_text": body,
        "created_at": datetime.now(UTC).isoformat(),
        **extra,
    }


async def test_follow_comment_reaction_mention_notifications(cluster: Cluster) -> None:
    inst = await (await cluster.start()).serve()
    alice, bob, carol = await cluster.people("alice", "bob", "carol")
    live = await inst.connect(alice)
    await cluster.apply(
        "quark.user.followed",
        {
            "follower_id": bob.id,
            "follower_username": "bob",
            "followee_id": alice.id,
            "followee_username": "alice",
            "at": datetime.now(UTC).isoformat(),
        },
        consumer="notify",
    )
    # A comment on alice's post that mentions carol; alice commenting on her own post tells nobody.
    await cluster.apply(
        "quark.comment.created", comment(alice, bob, "Great, @carol should see this"), consumer="notify"
    )
    await cluster.apply("quark.comment.created", comment(alice, alice, "thanks"), consumer="notify")
    # Reactions to one post collapse into one unread notification; a removal adds nothing.
    for who in (bob, carol):
        await cluster.apply(
            "quark.post.reacted",
            {"post_id": "p1", "post_author_id": alice.id, "user_id": who.id, "kind": "like", "action": "added"},
            consumer="notify",
        )
    await cluster.apply(
        "quark.post.reacted",
        {"post_id": "p1", "post_author_id": alice.id, "user_id": bob.id, "kind": "like", "action": "removed"},
        consumer="notify",
    )
    mine = await notes(cluster, alice)
    assert [n["kind"] for n in mine] == ["reaction", "comment", "follow"]
    assert mine[0]["count"] == 2 and mine[1]["data"]["post_id"] == "p1" and mine[2]["actor_id"] == bob.id
    assert [n["kind"] for n in await notes(cluster, carol)] == ["mention"]
    # Pushed live over the WebSocket (one per created notification).
    pushed = await live.wait_for("notification", count=3)
    assert {p["notification"]["kind"] for p in pushed} == {"follow", "comment", "reaction"}
    created = await cluster.published("quark.notification.created")
    assert sorted(e["kind"] for e in created) == ["comment", "follow", "mention", "reaction"]
    # Mark one read, then all; the unread count follows.
    c = inst.client
    assert (await c.get("/api/v1/notifications/unread-count", headers=alice.headers)).json() == {"unread": 3}
    one = await c.post(f"/api/v1/notifications/{mine[2]['id']}/read", headers=alice.headers)
    assert one.status_code == 200 and one.json()["read"] is True
    assert_problem(await c.post(f"/api/v1/notifications/{mine[2]['id']}/read", headers=carol.headers), 404)
    assert [n["kind"] for n in await notes(cluster, alice, unread="true")] == ["reaction", "comment"]
    assert (await c.post("/api/v1/notifications/read-all", headers=alice.headers)).json() == {"marked": 2}
    assert (await c.get("/api/v1/notifications/unread-count", headers=alice.headers)).json() == {"unread": 0}
    # Pagination by cursor.
    page = (await c.get("/api/v1/notifications", params={"limit": 2}, headers=alice.headers)).json()
    rest = (
        await c.get("/api/v1/notifications", params={"limit": 2, "cursor": page["next_cursor"]}, headers=alice.headers)
    ).json()
    assert [n["id"] for n in page["items"] + rest["items"]] == [n["id"] for n in mine] and rest["next_cursor"] is None


async def test_mentions_and_messages_while_offline(cluster: Cluster) -> None:
    inst = await (await cluster.start()).serve()
    alice, bob, carol = await cluster.people("alice", "bob", "carol")
    team = await group(inst, alice, bob, carol)
    carol_ws = await inst.connect(carol)  # online: no "message" notification for her
    msg = await send(inst, alice, team, "hello @carol and @nobody")
    assert msg["mentions"] == [carol.id]
    await send(inst, alice, team, "second")
    await send(inst, alice, team, "third")
    # Messages notify offline members from the notify consumer, after the send's commit.
    bob_notes = await eventually(lambda: counted(cluster, bob, ("message", 3)), what="bob's message notification")
    assert bob_notes[0]["data"]["conversation_id"] == team
    carol_kinds = [n["kind"] for n in await notes(cluster, carol)]
    assert carol_kinds == ["mention"]
    await carol_ws.wait_for("notification", lambda f: f["notification"]["kind"] == "mention")
    # Reading the conversation reads its message notification; the next message starts a new one.
    await inst.client.post(f"/api/v1/chats/{team}/read", json={"seq": 3}, headers=bob.headers)
    assert await notes(cluster, bob, unread="true") == []
    await send(inst, alice, team, "fourth")
    await eventually(lambda: counted(cluster, bob, ("message", 1), unread="true"), what="a new message notification")
    # A user who blocked the actor is not notified by them.
    await cluster.apply(
        "quark.user.blocked", {"blocker_id": carol.id, "blocked_id": alice.id, "at": datetime.now(UTC).isoformat()}
    )
    await send(inst, alice, team, "@carol again")
    assert [n["kind"] for n in await notes(cluster, carol)] == ["mention"]


async def test_account_deletion_removes_only_the_deleted_accounts_side(cluster: Cluster) -> None:
    inst = await cluster.start()
    alice, bob, carol = await cluster.people("alice", "bob", "carol")
    dm = await direct(inst, alice, bob)
    team = await group(inst, bob, alice, carol)
    await send(inst, bob, dm, "hi alice")
    await send(inst, bob, team, "hi team")
    await send(inst, carol, team, "hi all")
    await cluster.apply(
        "quark.user.blocked", {"blocker_id": bob.id, "blocked_id": carol.id, "at": datetime.now(UTC).isoformat()}
    )
    assert await notes(cluster, alice)
    await cluster.apply("quark.auth.user_deleted", {"user_id": bob.id, "username": "bob"})
    # Alice keeps her direct chat with bob, his message a tombstone; in the group too, and alice owns it.
    kept = (await inst.client.get(f"/api/v1/chats/{dm}/messages", headers=alice.headers)).json()["items"]
    assert [(m["body"], m["deleted"], m["sender_id"], m["sender_deleted"]) for m in kept] == [("", True, None, True)]
    history = (await inst.client.get(f"/api/v1/chats/{team}/messages", headers=alice.headers)).json()["items"]
    assert [(m["body"], m["deleted"], m["sender_id"]) for m in history] == [
        ("", True, None),
        ("hi all", False, carol.id),
    ]
    detail = (await inst.client.get(f"/api/v1/chats/{team}", headers=alice.headers)).json()
    assert detail["owner_id"] == alice.id and detail["member_count"] == 2
    async with inst.svc.ctx.database().session() as session:
        for model, col in (
            (Member, Member.user_id),
            (Notification, Notification.user_id),
            (Message, Message.sender_id),
            (Block, Block.blocker_id),
        ):
            n = await session.scalar(select(func.count()).select_from(model).where(col == bob.uuid))
            assert n == 0, model.__name__
        left = await session.scalar(
            select(func.count()).select_from(Notification).where(Notification.actor_id == bob.uuid)
        )
        assert left == 0  # the notifications alice had from bob stay, orphaned (see test_hardening.py)
    # The same deletion announced again by the user service changes nothing more.
    await cluster.apply("quark.user.deleted", {"user_id": bob.id})

    async def still_two() -> bool:
        again = (await inst.client.get(f"/api/v1/chats/{team}", headers=alice.headers)).json()
        return bool(again["member_count"] == 2)

    await eventually(still_two)


async def test_message_notifications_come_from_the_event_and_skip_read_and_deleted_messages(cluster: Cluster) -> None:
    inst = await (await cluster.start()).serve()
    alice, bob = await cluster.people("alice", "bob")
    dm = await direct(inst, alice, bob)
    first = await send(inst, alice, dm, "are you there?")
    await eventually(lambda: counted(cluster, bob, ("message", 1), unread="true"), what="bob's notification")
    sent = [e for e in await cluster.published("quark.message.sent") if e["message_id"] == first["id"]]
    assert len(sent) == 1 and "body" not in sent[0]  # the event names the message; the body stays private
    second = await send(inst, alice, dm, "hello?")
    await eventually(lambda: counted(cluster, bob, ("message", 2), unread="true"), what="the count bumped")
    await inst.client.post(f"/api/v1/chats/{dm}/read", json={"seq": 2}, headers=bob.headers)
    assert await notes(cluster, bob, unread="true") == []
    # An event that arrives after bob read that far (a slow consumer, a redelivery) notifies nobody.
    await cluster.apply("quark.message.sent", sent[0], consumer="notify")
    # Nor does one for a message deleted before it was consumed.
    assert (await inst.client.delete(f"/api/v1/messages/{second['id']}", headers=alice.headers)).status_code == 204
    late = {**sent[0], "message_id": second["id"], "seq": 99}
    await cluster.apply("quark.message.sent", late, consumer="notify")
    assert await notes(cluster, bob, unread="true") == []
    # The sender is never notified of their own message; an online member is not either.
    bob_ws = await inst.connect(bob)
    await send(inst, alice, dm, "now you are online")
    third = await send(inst, bob, dm, "yes")
    await eventually(lambda: counted(cluster, alice, ("message", 1), unread="true"), what="alice's notification")
    assert await notes(cluster, bob, unread="true") == []
    await bob_ws.close()
    assert third["seq"] == 4
