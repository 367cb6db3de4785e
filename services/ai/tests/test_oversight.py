"""AI oversight (the console's AI page): thresholds an admin changes (applied to the next event, audited),
the runs' usage and quotas, everyone's pending drafts; all admin-only."""

from __future__ import annotations

import pytest
from ai_testkit import AI, API, assert_problem

# Scores about 0.86 with the bundled classifier: below the default 0.9 threshold, above 0.3.
MILD = "What a silly and lazy article."
ROUTES = [("GET", "/admin/thresholds"), ("PUT", "/admin/thresholds"), ("GET", "/admin/usage"),
          ("GET", "/admin/drafts")]


@pytest.mark.parametrize(("method", "path"), ROUTES)
async def test_oversight_is_for_admins_only(ai: AI, method: str, path: str) -> None:
    body = {"threshold": 0.5} if method == "PUT" else None
    for roles in (("user",), ("moderator",)):
        who = ai.person(f"p{len(roles[0])}", roles=roles)
        assert_problem(await ai.client.request(method, API + path, json=body, headers=who.headers), 403)
    assert_problem(await ai.client.request(method, API + path, json=body), 401)
    assert await ai.outbox("quark.ai.thresholds_changed") == []


async def test_admin_lowers_the_threshold_and_the_next_post_is_flagged(ai: AI) -> None:
    admin = ai.person("root", roles=("admin",))
    author = ai.person("writer")
    before = (await ai.client.get(f"{API}/admin/thresholds", headers=admin.headers)).json()
    assert before["threshold"] == before["default_threshold"] == 0.9 and before["updated_by"] is None
    assert {r["name"] for r in before["rules"]} >= {"link-spam", "threat", "prompt-injection"}

    first = await ai.publish_post(author, "Take one", MILD)
    assert await ai.outbox("quark.ai.moderation_flagged") == []

    changed = await ai.client.put(f"{API}/admin/thresholds", headers=admin.headers, json={
        "threshold": 0.3, "rule_scores": {"prompt-injection": 0.95}, "reason": "too much slips through"})
    assert changed.status_code == 200, changed.text
    body = changed.json()
    assert body["threshold"] == 0.3 and body["updated_by"] == admin.id and body["reason"] == "too much slips through"
    injection = next(r for r in body["rules"] if r["name"] == "prompt-injection")
    assert injection["score"] == 0.95 and injection["default_score"] == 0.5
    audit = await ai.outbox("quark.ai.thresholds_changed")
    assert [a["data"] for a in audit] == [{
        "actor_id": admin.id, "reason": "too much slips through", "threshold": 0.3, "previous_threshold": 0.9,
        "rule_scores": {"prompt-injection": 0.95}, "previous_rule_scores": {}}]
    # The same values again change nothing and audit nothing.
    same = await ai.client.put(f"{API}/admin/thresholds", headers=admin.headers,
                               json={"threshold": 0.3, "rule_scores": {"prompt-injection": 0.95}})
    assert same.status_code == 200 and len(await ai.outbox("quark.ai.thresholds_changed")) == 1

    second = await ai.publish_post(author, "Take two", MILD)
    flags = [f["data"]["target_id"] for f in await ai.outbox("quark.ai.moderation_flagged")]
    assert flags == [second] and first not in flags
    status = (await ai.client.get(f"{API}/status", headers=author.headers)).json()
    assert status["moderation_model"]


async def test_bad_thresholds_are_refused_and_change_nothing(ai: AI) -> None:
    admin = ai.person("root", roles=("admin",))
    for body in ({"threshold": 0}, {"threshold": 1.5}, {"threshold": "high"}, {"threshold": 0.5, "extra": 1},
                 {"threshold": 0.5, "rule_scores": {"no-such-rule": 0.5}},
                 {"threshold": 0.5, "rule_scores": {"threat": 2}}, {"threshold": 0.5, "reason": "x" * 501}):
        assert_problem(await ai.client.put(f"{API}/admin/thresholds", headers=admin.headers, json=body), 422)
    assert await ai.outbox("quark.ai.thresholds_changed") == []
    assert (await ai.client.get(f"{API}/admin/thresholds", headers=admin.headers)).json()["threshold"] == 0.9


async def test_usage_and_everyones_pending_drafts(ai: AI) -> None:
    admin = ai.person("root", roles=("admin",))
    alice, bob = ai.person("alice"), ai.person("bob")
    await ai.publish_post(alice, "Soup", "A lovely tomato soup recipe for the winter evenings.")
    for who in (alice, bob):
        made = await ai.client.post(f"{API}/drafts", headers=who.headers, json={"topic": "Growing tomatoes"})
        assert made.status_code == 201, made.text
    usage = (await ai.client.get(f"{API}/admin/usage", headers=admin.headers)).json()
    agents = {(r["agent"], r["outcome"]): r["runs"] for r in usage["rows"]}
    assert agents[("moderation", "passed")] == 1 and agents[("draft", "ok")] == 2
    assert {q["name"]: q["limit"] for q in usage["quotas"]} == {"draft": 20, "assist": 200}
    assert usage["drafts"] == {"pending": 2}
    pending = (await ai.client.get(f"{API}/admin/drafts", params={"status": "pending"}, headers=admin.headers)).json()
    assert sorted(d["user_id"] for d in pending["items"]) == sorted([alice.id, bob.id])
    assert_problem(await ai.client.get(f"{API}/admin/usage", params={"hours": 0}, headers=admin.headers), 422)
