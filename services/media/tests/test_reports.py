"""Reporting a file to the moderation queue, and the queue's `delete` decision."""

import uuid
from pathlib import Path

from media_testkit import API, assert_problem, png, start

from quark_sdk.testing import QuarkTestEnv


async def test_report_then_delete_by_decision(quark: QuarkTestEnv, tmp_path: Path) -> None:
    h = await start(quark, tmp_path)
    alice, bob = h.account(), h.account()
    pic = await h.ready(alice, png(10, 10))
    report = await h.client.post(f"{API}/{pic['id']}/report", json={"reason": "gore"}, headers=bob.headers)
    assert report.status_code == 201, report.text
    assert_problem(await h.client.post(f"{API}/{pic['id']}/report", json={"reason": "again"}, headers=bob.headers),
                   409)
    assert_problem(await h.client.post(f"{API}/{pic['id']}/report", json={"reason": "me"}, headers=alice.headers),
                   422)
    assert_problem(await h.client.post(f"{API}/{uuid.uuid4()}/report", json={"reason": "x"}, headers=bob.headers),
                   404)
    assert_problem(await h.client.post(f"{API}/{pic['id']}/report", json={"reason": " "}, headers=bob.headers), 422)
    [event] = await h.published("quark.media.reported")
    assert (event["media_id"], event["owner_id"], event["reporter_id"]) == (pic["id"], alice.id, bob.id)

    decision = {"decision_id": str(uuid.uuid4()), "case_id": str(uuid.uuid4()), "kind": "media",
                "target_id": pic["id"], "module": "media", "author_id": alice.id, "action": "delete",
                "reason": "gore", "moderator_id": str(uuid.uuid4()), "decided_at": "2026-12-04T12:00:00+00:00"}
    await h.publish("quark.moderation.decided", decision)
    await h.publish("quark.moderation.decided", {**decision, "decision_id": str(uuid.uuid4())})  # again: no-op
    await h.consumed("moderation")
    assert_problem(await h.client.get(f"{API}/{pic['id']}"), 404)
    assert await h.objects() == []
    [deleted] = await h.published("quark.media.deleted")
    assert deleted["reason"] == "moderation"
