"""Reporting a message to the moderation queue (participants only, once, rate-limited; the event carries only
the message's neighbourhood) and applying the queue's decisions (hide, delete) on messages."""

from __future__ import annotations

import uuid
from typing import Any

from messaging_testkit import Cluster, Instance, Person, assert_problem, direct, group, send


async def _report(inst: Instance, who: Person, message_id: int, reason: str = "harassment") -> Any:
    return await inst.client.post(f"/api/v1/messages/{message_id}/report", json={"reason": reason},
                                  headers=who.headers)


def decided(message_id: int | str, action: str, module: str = "messaging") -> dict[str, Any]:
    return {"decision_id": str(uuid.uuid4()), "case_id": str(uuid.uuid4()), "kind": "chat_message",
            "target_id": str(message_id), "module": module, "author_id": None, "action": action,
            "reason": "threats", "moderator_id": str(uuid.uuid4()), "decided_at": "2026-12-04T12:00:00+00:00"}


async def test_a_participant_reports_a_message_with_its_neighbourhood_only(cluster: Cluster) -> None:
    inst = await cluster.start(report_context=2)
    alice, bob, carol = await cluster.people("alice", "bob", "carol")
    chat = await direct(inst, alice, bob)
    sent = [await send(inst, who, chat, f"line {i}") for i, who in enumerate([alice, bob] * 4)]
    elsewhere = await group(inst, bob, carol)
    await send(inst, bob, elsewhere, "a secret of another chat")
    target = sent[3]  # bob's "line 3"

    r = await _report(inst, alice, target["id"], "threatening me")
    assert r.status_code == 201, r.text
    assert r.json()["status"] == "open" and r.json()["message_id"] == target["id"]
    [event] = await cluster.published("quark.message.reported")
    assert (event["chat_id"], event["message_id"], event["author_id"], event["reporter_id"]) == (
        chat, str(target["id"]), bob.id, alice.id)
    assert [line["body"] for line in event["thread"]] == ["line 1", "line 2", "line 3", "line 4", "line 5"]
    assert [line["reported"] for line in event["thread"]] == [False, False, True, False, False]
    assert event["thread"][2]["sender_username"] == "bob"

    assert_problem(await _report(inst, alice, target["id"]), 409)  # one open report per reporter
    assert_problem(await _report(inst, carol, target["id"]), 404)  # not a participant: no such message for her
    assert_problem(await _report(inst, bob, target["id"]), 422)  # one's own message
    assert_problem(await _report(inst, alice, 10**12), 404)
    assert_problem(await inst.client.post(f"/api/v1/messages/{target['id']}/report", json={"reason": " \x01 "},
                                          headers=alice.headers), 422)
    assert_problem(await inst.client.post(f"/api/v1/messages/{target['id']}/report", json={},
                                          headers=alice.headers), 422)
    assert_problem(await inst.client.post(f"/api/v1/messages/{target['id']}/report", json={"reason": "x"}), 401)
    assert len(await cluster.published("quark.message.reported")) == 1


async def test_reports_are_rate_limited(cluster: Cluster) -> None:
    inst = await cluster.start(report_rate_limit=1)
    alice, bob = await cluster.people("alice", "bob")
    chat = await direct(inst, alice, bob)
    one, two = await send(inst, bob, chat, "one"), await send(inst, bob, chat, "two")
    assert (await _report(inst, alice, one["id"])).status_code == 201
    assert_problem(await _report(inst, alice, two["id"]), 429)


async def test_hide_and_delete_decisions_apply_and_close_the_reports(cluster: Cluster) -> None:
    inst = await cluster.start()
    alice, bob = await cluster.people("alice", "bob")
    chat = await direct(inst, alice, bob)
    hidden, deleted, kept = (await send(inst, bob, chat, "ugly"), await send(inst, bob, chat, "uglier"),
                             await send(inst, bob, chat, "fine"))
    for m in (hidden, deleted, kept):
        assert (await _report(inst, alice, m["id"])).status_code == 201
    await cluster.apply("quark.moderation.decided", decided(hidden["id"], "hide"))
    await cluster.apply("quark.moderation.decided", decided(deleted["id"], "delete"))
    await cluster.apply("quark.moderation.decided", decided(kept["id"], "dismiss"))
    await cluster.apply("quark.moderation.decided", decided(kept["id"], "delete", module="blog"))  # not ours
    await cluster.apply("quark.moderation.decided", decided("not-a-number", "delete"))

    history = (await inst.client.get(f"/api/v1/chats/{chat}/messages", headers=alice.headers)).json()["items"]
    by_id = {m["id"]: m for m in history}
    assert (by_id[hidden["id"]]["hidden"], by_id[hidden["id"]]["body"]) == (True, "")
    assert (by_id[deleted["id"]]["deleted"], by_id[deleted["id"]]["body"]) == (True, "")
    assert by_id[kept["id"]]["body"] == "fine"
    # The reports are closed: the reporter may report the kept message again (a new open report).
    assert (await _report(inst, alice, kept["id"])).status_code == 201
    assert_problem(await _report(inst, alice, hidden["id"]), 409)  # the message is gone
