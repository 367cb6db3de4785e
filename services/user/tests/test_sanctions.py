"""The moderation queue's sanctions: a warning lands in the author's activity; a suspension suspends the
account (quark.user.suspended, which auth enforces) naming the moderator and its end."""

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from user_testkit import start

from quark_sdk.testing import QuarkTestEnv


def decided(author: str, action: str, **extra: Any) -> dict[str, Any]:
    return {"decision_id": str(uuid.uuid4()), "case_id": str(uuid.uuid4()), "kind": "post",
            "target_id": str(uuid.uuid4()), "module": "blog", "author_id": author, "action": action,
            "reason": "insults", "moderator_id": str(uuid.uuid4()), "decided_at": datetime.now(UTC).isoformat(),
            **extra}


async def test_warn_and_suspend_the_author(quark: QuarkTestEnv) -> None:
    h = await start(quark)
    (bob,) = await h.accounts("bob")
    until = datetime.now(UTC) + timedelta(days=1)
    suspend = decided(bob.id, "suspend", duration_seconds=86400, until=until.isoformat())
    await h.publish("quark.moderation.decided", decided(bob.id, "warn"))
    await h.publish("quark.moderation.decided", suspend)
    await h.publish("quark.moderation.decided", {**suspend, "decision_id": str(uuid.uuid4())})  # already suspended
    await h.publish("quark.moderation.decided", decided(bob.id, "hide"))  # not a sanction: nothing here
    await h.publish("quark.moderation.decided", decided(str(uuid.uuid4()), "suspend"))  # unknown author
    await h.consumed("moderation")

    [event] = await h.published("quark.user.suspended")
    assert event["user_id"] == bob.id and event["suspended"] is True
    assert event["actor_id"] == suspend["moderator_id"] and "until" in event["reason"]
    kinds = [a["kind"] for a in (await h.get("/me/activity", bob)).json()["items"]]
    assert "warned" in kinds and "suspended" in kinds


async def test_report_a_profile_and_the_decision_closes_it(quark: QuarkTestEnv) -> None:
    from user_testkit import assert_problem

    h = await start(quark)
    alice, bob = await h.accounts("alice", "bob")
    r = await h.post("/bob/report", alice, json={"reason": "impersonation"})
    assert r.status_code == 201, r.text
    assert_problem(await h.post("/bob/report", alice, json={"reason": "again"}), 409)
    assert_problem(await h.post("/alice/report", alice, json={"reason": "me"}), 422)
    assert_problem(await h.post("/nobody/report", alice, json={"reason": "x"}), 404)
    assert_problem(await h.post("/bob/report", alice, json={"reason": " "}), 422)
    [event] = await h.published("quark.user.profile_reported")
    assert (event["user_id"], event["username"], event["reporter_id"]) == (bob.id, "bob", alice.id)
    await h.publish("quark.moderation.decided", {**decided(bob.id, "dismiss"), "kind": "profile",
                                                 "target_id": bob.id, "module": "user"})
    await h.consumed("moderation")
    assert (await h.post("/bob/report", alice, json={"reason": "still"})).status_code == 201  # the first closed
