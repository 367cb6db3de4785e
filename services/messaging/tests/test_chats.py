"""Conversations over REST: direct chats, groups, channels, membership rules and blocks."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from messaging_testkit import Cluster, assert_problem, direct, group, send
from sqlalchemy import text


async def test_direct_chat_is_one_per_pair(cluster: Cluster) -> None:
    inst = await cluster.start()
    alice, bob = await cluster.people("alice", "bob")
    first = await inst.client.post("/api/v1/chats/direct", json={"user_id": bob.id}, headers=alice.headers)
    assert first.status_code == 201, first.text
    again = await inst.client.post("/api/v1/chats/direct", json={"user_id": alice.id}, headers=bob.headers)
    assert again.status_code == 200
    assert again.json()["id"] == first.json()["id"]
    assert again.json()["peer_id"] == alice.id
    assert_problem(
        await inst.client.post("/api/v1/chats/direct", json={"user_id": alice.id}, headers=alice.headers), 422
    )
    created = await cluster.published("quark.chat.created")
    assert len(created) == 1 and sorted(created[0]["member_ids"]) == sorted([alice.id, bob.id])


async def test_non_members_cannot_read_or_post(cluster: Cluster) -> None:
    inst = await cluster.start()
    alice, bob, eve = await cluster.people("alice", "bob", "eve")
    dm = await direct(inst, alice, bob)
    team = await group(inst, alice, bob)
    await send(inst, alice, dm, "secret")
    await send(inst, alice, team, "team secret")
    for chat in (dm, team):
        assert_problem(await inst.client.get(f"/api/v1/chats/{chat}/messages", headers=eve.headers), 404)
        assert_problem(await inst.client.get(f"/api/v1/chats/{chat}", headers=eve.headers), 404)
        assert_problem(
            await inst.client.post(f"/api/v1/chats/{chat}/messages", json={"body": "let me in"}, headers=eve.headers),
            404,
        )
        assert_problem(await inst.client.post(f"/api/v1/chats/{chat}/read", json={"seq": 1}, headers=eve.headers), 404)
    mid = (await inst.client.get(f"/api/v1/chats/{dm}/messages", headers=bob.headers)).json()["items"][0]["id"]
    assert_problem(await inst.client.get(f"/api/v1/messages/{mid}", headers=eve.headers), 404)
    assert_problem(await inst.client.patch(f"/api/v1/messages/{mid}", json={"body": "x"}, headers=eve.headers), 404)
    assert_problem(await inst.client.get(f"/api/v1/chats/{dm}/messages"), 401)
    # Nothing of theirs leaked into the listing either.
    assert (await inst.client.get("/api/v1/chats", headers=eve.headers)).json()["items"] == []


async def test_group_roles_invite_kick_leave_rename(cluster: Cluster) -> None:
    inst = await cluster.start()
    owner, adm, mem, new, other = await cluster.people("owner", "adm", "mem", "newbie", "other")
    chat = await group(inst, owner, adm, mem)
    c = inst.client
    # Only the owner changes roles; members cannot invite, kick or rename.
    assert (
        await c.put(f"/api/v1/chats/{chat}/members/{adm.id}/role", json={"role": "admin"}, headers=owner.headers)
    ).status_code == 204
    assert_problem(await c.post(f"/api/v1/chats/{chat}/members", json={"user_ids": [new.id]}, headers=mem.headers), 403)
    assert_problem(await c.patch(f"/api/v1/chats/{chat}", json={"title": "Mine"}, headers=mem.headers), 403)
    assert_problem(await c.delete(f"/api/v1/chats/{chat}/members/{adm.id}", headers=mem.headers), 403)
    added = await c.post(f"/api/v1/chats/{chat}/members", json={"user_ids": [new.id, mem.id]}, headers=adm.headers)
    assert added.status_code == 200 and added.json() == [new.id]
    renamed = await c.patch(f"/api/v1/chats/{chat}", json={"title": "Renamed"}, headers=adm.headers)
    assert renamed.status_code == 200 and renamed.json()["title"] == "Renamed"
    # An admin cannot remove the owner; the owner can remove an admin.
    assert_problem(await c.delete(f"/api/v1/chats/{chat}/members/{owner.id}", headers=adm.headers), 403)
    assert (await c.delete(f"/api/v1/chats/{chat}/members/{mem.id}", headers=adm.headers)).status_code == 204
    assert_problem(await c.post(f"/api/v1/chats/{chat}/messages", json={"body": "x"}, headers=mem.headers), 404)
    # The owner leaves: the admin inherits the group.
    assert (await c.post(f"/api/v1/chats/{chat}/leave", headers=owner.headers)).status_code == 204
    detail = (await c.get(f"/api/v1/chats/{chat}", headers=adm.headers)).json()
    assert detail["owner_id"] == adm.id and detail["role"] == "owner"
    assert {m["user_id"] for m in detail["members"]} == {adm.id, new.id}
    assert detail["member_count"] == 2
    assert_problem(await c.get(f"/api/v1/chats/{chat}", headers=other.headers), 404)


async def test_public_channel_only_admins_post(cluster: Cluster) -> None:
    inst = await cluster.start()
    owner, reader = await cluster.people("owner", "reader")
    chan = await group(inst, owner, kind="channel", title="Announcements")
    await send(inst, owner, chan, "welcome")
    c = inst.client
    listed = (await c.get("/api/v1/chats/channels", params={"q": "announce"}, headers=reader.headers)).json()
    assert [i["id"] for i in listed["items"]] == [chan]
    # A passer-by sees the channel, not who subscribes to it, and has nothing unread.
    seen = (await c.get(f"/api/v1/chats/{chan}", headers=reader.headers)).json()
    assert (seen["role"], seen["unread"], seen["members"], seen["last_message"]["body"]) == (None, 0, [], "welcome")
    # The same with the history's latest page (the latest message then comes from that page).
    paged = (await c.get(f"/api/v1/chats/{chan}", params={"messages": 5}, headers=reader.headers)).json()
    assert [m["body"] for m in paged.pop("messages")["items"]] == ["welcome"]
    assert paged == {k: v for k, v in seen.items() if k != "messages"}
    empty = await group(inst, owner, kind="channel", title="Quiet")
    assert (await c.get(f"/api/v1/chats/{empty}", headers=reader.headers)).json()["last_message"] is None
    quiet = (await c.get(f"/api/v1/chats/{empty}", params={"messages": 5}, headers=reader.headers)).json()
    assert quiet["last_message"] is None and quiet["messages"] == {"items": [], "older": None, "newer": None}
    private = await group(inst, owner, title="Private")
    assert_problem(await c.get(f"/api/v1/chats/{private}", headers=reader.headers), 404)
    assert_problem(await c.get(f"/api/v1/chats/{uuid.uuid4()}", headers=reader.headers), 404)
    # Anybody may read a public channel, and subscribe; subscribers do not post.
    page = await c.get(f"/api/v1/chats/{chan}/messages", headers=reader.headers)
    assert [m["body"] for m in page.json()["items"]] == ["welcome"]
    assert_problem(await c.post(f"/api/v1/chats/{chan}/messages", json={"body": "me too"}, headers=reader.headers), 403)
    sub = await c.post(f"/api/v1/chats/{chan}/subscribe", headers=reader.headers)
    assert sub.status_code == 200 and sub.json()["role"] == "subscriber"
    assert_problem(await c.post(f"/api/v1/chats/{chan}/messages", json={"body": "me too"}, headers=reader.headers), 403)
    assert (
        await c.put(f"/api/v1/chats/{chan}/members/{reader.id}/role", json={"role": "admin"}, headers=owner.headers)
    ).status_code == 204
    await send(inst, reader, chan, "now I can")
    mine = (await c.get("/api/v1/chats", headers=reader.headers)).json()["items"]
    assert [i["id"] for i in mine] == [chan]


async def test_blocked_users_cannot_message(cluster: Cluster) -> None:
    inst = await cluster.start()
    alice, bob, carol = await cluster.people("alice", "bob", "carol")
    dm = await direct(inst, alice, bob)
    await send(inst, bob, dm, "before the block")
    await cluster.apply(
        "quark.user.blocked", {"blocker_id": alice.id, "blocked_id": bob.id, "at": "2026-01-01T00:00:00Z"}
    )
    c = inst.client
    # Either direction is refused, and no new direct chat or group invitation can go around it.
    assert_problem(await c.post(f"/api/v1/chats/{dm}/messages", json={"body": "hey"}, headers=bob.headers), 403)
    assert_problem(await c.post(f"/api/v1/chats/{dm}/messages", json={"body": "hey"}, headers=alice.headers), 403)
    assert_problem(await c.post("/api/v1/chats/direct", json={"user_id": alice.id}, headers=bob.headers), 403)
    assert_problem(
        await c.post(
            "/api/v1/chats", json={"kind": "group", "title": "t", "member_ids": [alice.id]}, headers=bob.headers
        ),
        403,
    )
    team = await group(inst, carol, bob)
    assert_problem(
        await c.post(f"/api/v1/chats/{team}/members", json={"user_ids": [alice.id]}, headers=bob.headers), 403
    )
    history = (await c.get(f"/api/v1/chats/{dm}/messages", headers=alice.headers)).json()["items"]
    assert [m["body"] for m in history] == ["before the block"]
    await cluster.apply(
        "quark.user.unblocked", {"blocker_id": alice.id, "blocked_id": bob.id, "at": "2026-01-01T00:00:01Z"}
    )
    await send(inst, bob, dm, "after the block")


async def test_chat_with_its_history_in_one_request(cluster: Cluster) -> None:
    inst = await cluster.start()
    alice, bob, eve = await cluster.people("alice", "bob", "eve")
    dm = await direct(inst, alice, bob)
    for n in range(5):
        await send(inst, alice if n % 2 else bob, dm, f"m{n}")
    c = inst.client
    # Without `messages` the detail is as before: no history.
    plain = (await c.get(f"/api/v1/chats/{dm}", headers=alice.headers)).json()
    assert plain["messages"] is None and len(plain["members"]) == 2
    # With it: the same page `GET .../messages` answers, beside the same detail.
    both = await c.get(f"/api/v1/chats/{dm}", params={"messages": 3}, headers=alice.headers)
    assert both.status_code == 200, both.text
    history = (await c.get(f"/api/v1/chats/{dm}/messages", params={"limit": 3}, headers=alice.headers)).json()
    assert both.json()["messages"] == history
    assert [m["body"] for m in history["items"]] == ["m2", "m3", "m4"] and history["older"] == 3
    assert {**both.json(), "messages": None} == plain
    # Paged with `before`, as the history is.
    older = (await c.get(f"/api/v1/chats/{dm}", params={"messages": 3, "before": 3}, headers=alice.headers)).json()
    assert older["messages"] == (
        await c.get(f"/api/v1/chats/{dm}/messages", params={"limit": 3, "before": 3}, headers=alice.headers)
    ).json()
    assert [m["body"] for m in older["messages"]["items"]] == ["m0", "m1"] and older["messages"]["older"] is None
    # Validated: a page is 0..100 messages; `before` only pages a history that was asked for.
    for bad in ({"messages": -1}, {"messages": 101}, {"messages": "x"}, {"before": 3}, {"messages": 3, "before": -1}):
        assert_problem(await c.get(f"/api/v1/chats/{dm}", params=bad, headers=alice.headers), 422)
    # The same rules: a stranger still finds nothing, and no token is still 401.
    assert_problem(await c.get(f"/api/v1/chats/{dm}", params={"messages": 3}, headers=eve.headers), 404)
    assert_problem(await c.get(f"/api/v1/chats/{dm}", params={"messages": 3}), 401)
    # A passer-by reads a public channel's history with it, as through `.../messages`.
    chan = await group(inst, alice, kind="channel", title="News")
    await send(inst, alice, chan, "hello all")
    seen = (await c.get(f"/api/v1/chats/{chan}", params={"messages": 10}, headers=eve.headers)).json()
    assert seen["members"] == [] and [m["body"] for m in seen["messages"]["items"]] == ["hello all"]


async def test_chat_members_read_with_the_chat_are_the_member_rows(cluster: Cluster) -> None:
    """The detail's members come from the chat's own statement (a JSON column): the same rows, order and
    values as the members table holds them, `joined_at` in UTC to the microsecond, a member messaging has no
    name for as null, at most `max_group_members`, and none for a passer-by."""
    inst = await cluster.start(max_group_members=3)
    alice, bob, carol = await cluster.people("alice", "bob", "carol")
    chat = await group(inst, alice, bob, carol)
    stranger = uuid.uuid4()  # a member whose account messaging never heard of (no row in its users replica)
    async with inst.svc.ctx.database().session() as session, session.begin():
        await session.execute(
            text("INSERT INTO members (conversation_id, user_id, role, joined_at) "
                 "VALUES (:c, :u, 'member', '2000-01-01 00:00:00.000001+00')"),
            {"c": chat, "u": stranger},
        )
    async with inst.svc.ctx.database().session() as session:
        rows = (await session.execute(
            text("SELECT m.user_id, u.username, m.role, m.last_read_seq, m.joined_at FROM members m "
                 "LEFT JOIN users u ON u.user_id = m.user_id WHERE m.conversation_id = :c "
                 "ORDER BY m.joined_at, m.user_id LIMIT 3"),
            {"c": chat},
        )).all()
    expected = [
        {"user_id": str(uid), "username": name, "role": role, "last_read_seq": seq,
         "joined_at": joined.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")}
        for uid, name, role, seq, joined in rows
    ]
    detail = (await inst.client.get(f"/api/v1/chats/{chat}", headers=alice.headers)).json()
    members = [{**m, "joined_at": normal_time(m["joined_at"])} for m in detail["members"]]
    assert members == expected and len(members) == 3
    assert members[0] == {**members[0], "user_id": str(stranger), "username": None,
                          "joined_at": "2000-01-01T00:00:00.000001Z"}
    # A passer-by of a public channel sees the channel, not who is in it.
    chan = await group(inst, alice, kind="channel", title="News")
    seen = (await inst.client.get(f"/api/v1/chats/{chan}", headers=bob.headers)).json()
    assert seen["members"] == [] and seen["member_count"] == 1


def normal_time(value: str) -> str:
    """An ISO time as UTC with six digits of microseconds (pydantic drops trailing zeros of a fraction)."""
    return datetime.fromisoformat(value).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
