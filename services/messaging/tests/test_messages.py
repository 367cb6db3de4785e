"""Messages over REST: edits, deletes, replies, attachments, idempotent resend, history, unread, rate limit."""

from __future__ import annotations

import uuid

from messaging_testkit import Cluster, assert_problem, direct, group, send


async def test_edit_delete_reply_attachments(cluster: Cluster) -> None:
    inst = await cluster.start()
    alice, bob = await cluster.people("alice", "bob")
    chat = await direct(inst, alice, bob)
    other = await direct(inst, alice, cluster.person("carol"))
    first = await send(inst, alice, chat, "first", attachments=["m_1", "m_2"])
    assert first["attachments"] == ["m_1", "m_2"] and first["seq"] == 1
    reply = await send(inst, bob, chat, "a reply", reply_to=first["id"])
    assert reply["reply_to"] == first["id"]
    elsewhere = await send(inst, alice, other, "elsewhere")
    c = inst.client
    assert_problem(
        await c.post(
            f"/api/v1/chats/{chat}/messages", json={"body": "x", "reply_to": elsewhere["id"]}, headers=alice.headers
        ),
        422,
    )
    # Only the author edits or deletes.
    assert_problem(await c.patch(f"/api/v1/messages/{first['id']}", json={"body": "hacked"}, headers=bob.headers), 403)
    assert_problem(await c.delete(f"/api/v1/messages/{first['id']}", headers=bob.headers), 403)
    edited = await c.patch(f"/api/v1/messages/{first['id']}", json={"body": "first, edited"}, headers=alice.headers)
    assert edited.status_code == 200 and edited.json()["edited_at"] is not None
    assert (await c.delete(f"/api/v1/messages/{first['id']}", headers=alice.headers)).status_code == 204
    tomb = (await c.get(f"/api/v1/messages/{first['id']}", headers=bob.headers)).json()
    assert tomb["deleted"] and tomb["body"] == "" and tomb["attachments"] == []
    assert_problem(await c.patch(f"/api/v1/messages/{first['id']}", json={"body": "again"}, headers=alice.headers), 404)
    sent = await cluster.published("quark.message.sent")
    assert [e["seq"] for e in sent if e["conversation_id"] == chat] == [1, 2]
    assert "body" not in sent[0]


async def test_client_message_id_makes_resend_idempotent(cluster: Cluster) -> None:
    inst = await cluster.start()
    alice, bob = await cluster.people("alice", "bob")
    chat = await direct(inst, alice, bob)
    body = {"body": "only once", "client_msg_id": "c-123"}
    first = await inst.client.post(f"/api/v1/chats/{chat}/messages", json=body, headers=alice.headers)
    again = await inst.client.post(f"/api/v1/chats/{chat}/messages", json=body, headers=alice.headers)
    assert first.status_code == 201 and again.status_code == 200
    assert again.json()["id"] == first.json()["id"]
    # Another sender may use the same client id; the same sender may not reuse it elsewhere.
    assert (await inst.client.post(f"/api/v1/chats/{chat}/messages", json=body, headers=bob.headers)).status_code == 201
    other = await direct(inst, alice, cluster.person("carol"))
    assert_problem(await inst.client.post(f"/api/v1/chats/{other}/messages", json=body, headers=alice.headers), 409)
    page = (await inst.client.get(f"/api/v1/chats/{chat}/messages", headers=alice.headers)).json()
    assert [m["seq"] for m in page["items"]] == [1, 2]


async def test_history_pages_both_ways_and_unread(cluster: Cluster) -> None:
    inst = await cluster.start()
    alice, bob = await cluster.people("alice", "bob")
    chat = await group(inst, alice, bob)
    for i in range(1, 8):
        await send(inst, alice, chat, f"m{i}")
    c = inst.client
    url = f"/api/v1/chats/{chat}/messages"
    latest = (await c.get(url, params={"limit": 3}, headers=bob.headers)).json()
    assert [m["seq"] for m in latest["items"]] == [5, 6, 7] and latest["older"] == 5 and latest["newer"] is None
    older = (await c.get(url, params={"limit": 3, "before": latest["older"]}, headers=bob.headers)).json()
    assert [m["seq"] for m in older["items"]] == [2, 3, 4] and older["older"] == 2 and older["newer"] == 4
    oldest = (await c.get(url, params={"limit": 3, "before": 2}, headers=bob.headers)).json()
    assert [m["seq"] for m in oldest["items"]] == [1] and oldest["older"] is None
    forward = (await c.get(url, params={"limit": 4, "after": 1}, headers=bob.headers)).json()
    assert [m["seq"] for m in forward["items"]] == [2, 3, 4, 5] and forward["newer"] == 5
    rest = (await c.get(url, params={"limit": 4, "after": 5}, headers=bob.headers)).json()
    assert [m["seq"] for m in rest["items"]] == [6, 7] and rest["newer"] is None
    assert_problem(await c.get(url, params={"before": 3, "after": 1}, headers=bob.headers), 422)

    assert (await c.get("/api/v1/messages/unread", headers=bob.headers)).json() == {
        "total": 7,
        "conversations": {chat: 7},
    }
    assert (await c.get("/api/v1/messages/unread", headers=alice.headers)).json()["total"] == 0
    read = await c.post(f"/api/v1/chats/{chat}/read", json={"seq": 5}, headers=bob.headers)
    assert read.json() == {"last_read_seq": 5}
    # The marker never moves back, and never past the end.
    assert (await c.post(f"/api/v1/chats/{chat}/read", json={"seq": 2}, headers=bob.headers)).json() == {
        "last_read_seq": 5
    }
    listing = (await c.get("/api/v1/chats", headers=bob.headers)).json()["items"]
    assert listing[0]["unread"] == 2 and listing[0]["last_message"]["body"] == "m7"
    # The chat's detail says the same (its own statement: conversation, membership, unread, latest message).
    one = (await c.get(f"/api/v1/chats/{chat}", headers=bob.headers)).json()
    assert (one["unread"], one["last_read_seq"], one["role"], one["last_message"]["body"]) == (2, 5, "member", "m7")
    assert {m["user_id"] for m in one["members"]} == {alice.id, bob.id}
    assert (await c.get(f"/api/v1/chats/{chat}", headers=alice.headers)).json()["unread"] == 0  # her own messages
    await c.delete(f"/api/v1/messages/{latest['items'][-1]['id']}", headers=alice.headers)  # m7: deleted, not unread
    one = (await c.get(f"/api/v1/chats/{chat}", headers=bob.headers)).json()
    assert one["unread"] == 1 and one["last_message"]["seq"] == 7
    # With its history's latest page the chat's latest message is that page's newest: the same answer beside it.
    paged = (await c.get(f"/api/v1/chats/{chat}", params={"messages": 3}, headers=bob.headers)).json()
    history = paged.pop("messages")
    assert [m["seq"] for m in history["items"]] == [5, 6, 7] and history["items"][-1] == one["last_message"]
    assert one["messages"] is None and paged == {k: v for k, v in one.items() if k != "messages"}
    older = (await c.get(f"/api/v1/chats/{chat}", params={"messages": 3, "before": 5}, headers=bob.headers)).json()
    assert older["last_message"] == one["last_message"] and [m["seq"] for m in older["messages"]["items"]] == [2, 3, 4]
    assert (await c.post(f"/api/v1/chats/{chat}/read", json={"seq": 10**9}, headers=bob.headers)).json() == {
        "last_read_seq": 7
    }
    detail = (await c.get(f"/api/v1/chats/{chat}", headers=alice.headers)).json()
    receipts = {m["user_id"]: m["last_read_seq"] for m in detail["members"]}
    assert receipts == {alice.id: 7, bob.id: 7}


async def test_chat_list_pages_by_activity(cluster: Cluster) -> None:
    inst = await cluster.start()
    alice = cluster.person("alice")
    chats = [await direct(inst, alice, cluster.person(f"p{i}")) for i in range(5)]
    await send(inst, alice, chats[2], "bump")
    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = (await inst.client.get("/api/v1/chats", params=params, headers=alice.headers)).json()
        seen += [i["id"] for i in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen[0] == chats[2] and sorted(seen) == sorted(chats) and len(seen) == 5


async def test_rate_limit_is_429_problem(cluster: Cluster) -> None:
    inst = await cluster.start(message_rate_limit=3)
    alice, bob = await cluster.people("alice", "bob")
    chat = await direct(inst, alice, bob)
    for i in range(3):
        await send(inst, alice, chat, f"m{i}")
    over = await inst.client.post(
        f"/api/v1/chats/{chat}/messages", json={"body": "one too many"}, headers=alice.headers
    )
    problem = assert_problem(over, 429)
    assert int(over.headers["Retry-After"]) >= 1 and problem["retry_after"] >= 1
    # Other users are not affected.
    await send(inst, bob, chat, "my own budget")


async def test_a_resend_neither_counts_against_the_rate_limit_nor_is_refused_by_it(cluster: Cluster) -> None:
    inst = await cluster.start(message_rate_limit=2)
    alice, bob = await cluster.people("alice", "bob")
    chat = await direct(inst, alice, bob)
    url = f"/api/v1/chats/{chat}/messages"
    first = await inst.client.post(url, json={"body": "once", "client_msg_id": "r-1"}, headers=alice.headers)
    assert first.status_code == 201
    for _ in range(3):  # a client retrying a lost answer
        again = await inst.client.post(url, json={"body": "once", "client_msg_id": "r-1"}, headers=alice.headers)
        assert again.status_code == 200 and again.json()["id"] == first.json()["id"]
    second = await send(inst, alice, chat, "the second new message")  # the budget of 2 is not spent by resends
    assert_problem(await inst.client.post(url, json={"body": "third"}, headers=alice.headers), 429)
    # Over the limit, a resend still gets its stored message back.
    late = await inst.client.post(url, json={"body": "once", "client_msg_id": "r-1"}, headers=alice.headers)
    assert late.status_code == 200 and late.json()["id"] == first.json()["id"]
    page = (await inst.client.get(url, headers=alice.headers)).json()
    assert [m["id"] for m in page["items"]] == [first.json()["id"], second["id"]]


async def test_bad_input_is_4xx_and_changes_nothing(cluster: Cluster) -> None:
    inst = await cluster.start(max_body_chars=50)
    alice, bob = await cluster.people("alice", "bob")
    chat = await direct(inst, alice, bob)
    c, h = inst.client, alice.headers
    url = f"/api/v1/chats/{chat}/messages"
    cases = [
        (c.post(url, json={"body": ""}, headers=h), 422),
        (c.post(url, json={"body": "x" * 51}, headers=h), 413),
        (c.post(url, json={"body": "nul\x00"}, headers=h), 422),
        (c.post(url, json={"body": "x", "attachments": ["../etc/passwd"]}, headers=h), 422),
        (c.post(url, json={"body": "x", "client_msg_id": "has space"}, headers=h), 422),
        (c.post(url, json={"body": "x", "unknown": 1}, headers=h), 422),
        (c.post(url, json={"body": "x", "reply_to": 0}, headers=h), 422),
        (c.post(url, content=b"{not json", headers={**h, "content-type": "application/json"}), 422),
        (c.post("/api/v1/chats/not-a-uuid/messages", json={"body": "x"}, headers=h), 422),
        (c.post(f"/api/v1/chats/{uuid.uuid4()}/messages", json={"body": "x"}, headers=h), 404),
        (c.get(url, params={"limit": 0}, headers=h), 422),
        (c.get(url, params={"before": -1}, headers=h), 422),
        (c.get("/api/v1/chats", params={"cursor": "!!!"}, headers=h), 422),
        (c.get("/api/v1/notifications", params={"cursor": "abc"}, headers=h), 422),
        (c.post("/api/v1/chats", json={"kind": "direct", "title": "x"}, headers=h), 422),
        (c.post("/api/v1/chats", json={"kind": "group", "title": ""}, headers=h), 422),
        (c.post("/api/v1/chats", json={"kind": "group", "title": "x" * 201}, headers=h), 422),
        (c.post("/api/v1/chats/direct", json={"user_id": "nope"}, headers=h), 422),
        (c.get("/api/v1/messages/99999999999999999999", headers=h), 422),
        (c.post(f"/api/v1/chats/{chat}/read", json={"seq": -1}, headers=h), 422),
        (c.patch(f"/api/v1/chats/{chat}", json={"title": "dm"}, headers=h), 422),
        (c.post(f"/api/v1/chats/{chat}/leave", headers=h), 422),
        (
            c.post(f"/api/v1/chats/{chat}/messages", json={"body": "x"}, headers={"Authorization": "Bearer nonsense"}),
            401,
        ),
        (
            c.post(
                f"/api/v1/chats/{chat}/messages",
                json={"body": "x"},
                headers=cluster.quark.bearer(cluster.quark.service_token("blog", ("x",))),
            ),
            403,
        ),
    ]
    for call, status in cases:
        assert_problem(await call, status)
    page = (await c.get(url, headers=h)).json()
    assert page["items"] == []
    assert await cluster.published("quark.message.sent") == []


async def test_concurrent_sends_share_transactions_but_fail_alone(cluster: Cluster) -> None:
    """Sends arriving together are written in one transaction (group commit); a refused one, or a racing
    duplicate client_msg_id, fails alone and the seqs stay contiguous."""
    import asyncio

    inst = await cluster.start()
    alice, bob, eve = await cluster.people("alice", "bob", "eve")
    chat = await group(inst, alice, bob)
    url = f"/api/v1/chats/{chat}/messages"
    calls = [inst.client.post(url, json={"body": f"m{i}"}, headers=alice.headers) for i in range(20)]
    calls += [inst.client.post(url, json={"body": "intruder"}, headers=eve.headers) for _ in range(3)]
    calls += [
        inst.client.post(url, json={"body": "once", "client_msg_id": "same"}, headers=bob.headers) for _ in range(4)
    ]
    responses = await asyncio.gather(*calls)
    assert [r.status_code for r in responses[:20]] == [201] * 20
    assert [r.status_code for r in responses[20:23]] == [404] * 3
    once = responses[23:]
    assert sorted(r.status_code for r in once) == [200, 200, 200, 201]
    assert len({r.json()["id"] for r in once}) == 1
    page = (await inst.client.get(url, params={"limit": 100}, headers=alice.headers)).json()["items"]
    assert [m["seq"] for m in page] == list(range(1, 22))
