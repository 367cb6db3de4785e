"""Decisions: moderators only, idempotent, a state machine per case, published to the owning module and
written to the audit log."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

import orjson
import pytest
from moderation_testkit import Moderation, assert_problem

from quark_sdk.events import stream_for
from quark_sdk.testing import eventually, read_stream


async def _post_case(mod: Moderation, author: str | None = None) -> str:
    reporter = mod.person("rita")
    await mod.report_post(reporter, str(uuid.uuid4()), author or str(uuid.uuid4()))
    moderator = mod.person("root", roles=("admin",))
    return str((await mod.queue(moderator))[-1]["id"])


async def _decided(mod: Moderation, count: int) -> list[dict[str, Any]]:
    bus = mod.svc.ctx.bus
    assert bus is not None

    async def probe() -> list[dict[str, Any]] | None:
        msgs = await read_stream(bus.js, stream_for("moderation", bus.namespace))
        events = [orjson.loads(m.data) for m in msgs]
        decided = [e for e in events if e["type"] == "quark.moderation.decided"]
        return decided if len(decided) >= count else None

    decided: list[dict[str, Any]] = await eventually(probe, what=f"{count} decided events")
    return decided


ROUTES = [
    ("GET", "/api/v1/moderation/cases", None),
    ("GET", "/api/v1/moderation/cases/{case}", None),
    ("POST", "/api/v1/moderation/cases/{case}/decisions", {"action": "dismiss", "reason": "fine"}),
]
ADMIN_ROUTES = [
    ("GET", "/api/v1/moderation/audit", None),
    ("GET", "/api/v1/moderation/audit/export", None),
]


@pytest.mark.parametrize(("method", "path", "body"), ROUTES + ADMIN_ROUTES)
async def test_every_route_refuses_people_without_the_role(mod: Moderation, method: str, path: str,
                                                           body: dict[str, Any] | None) -> None:
    case = await _post_case(mod)
    url = path.format(case=case)
    user = mod.person("ursula")
    assert_problem(await mod.client.request(method, url, json=body, headers=user.headers), 403)
    assert_problem(await mod.client.request(method, url, json=body), 401)
    service = mod.quark.bearer(mod.quark.service_token("blog", ("moderation",)))
    assert_problem(await mod.client.request(method, url, json=body, headers=service), 403)
    if (method, path, body) in ADMIN_ROUTES:  # a moderator sees the queue, not the audit log
        moderator = mod.person("mia", roles=("moderator",))
        assert_problem(await mod.client.request(method, url, json=body, headers=moderator.headers), 403)
    else:
        admin = mod.person("root", roles=("admin",))  # admin includes moderator
        assert (await mod.client.request(method, url, json=body, headers=admin.headers)).status_code in (200, 201)
    # refused requests changed nothing
    if method == "POST":
        moderator = mod.person("mia", roles=("moderator",))
        detail = (await mod.client.get(f"/api/v1/moderation/cases/{case}", headers=moderator.headers)).json()
        assert len(detail["decisions"]) == (0 if (method, path, body) in ADMIN_ROUTES else 1)


async def test_hide_then_suspend_the_author_publishes_each_decision_once(mod: Moderation) -> None:
    author = str(uuid.uuid4())
    case = await _post_case(mod, author)
    mia = mod.person("mia", roles=("moderator",))
    decision_id = str(uuid.uuid4())
    first = await mod.decide(mia, case, "hide", reason="insults", decision_id=decision_id)
    assert first.status_code == 201, first.text
    again = await mod.decide(mia, case, "hide", reason="insults", decision_id=decision_id)
    assert again.status_code == 200 and again.json()["id"] == decision_id
    same_action = await mod.decide(mia, case, "hide", reason="other words")  # no id: the action already taken
    assert same_action.status_code == 200 and same_action.json()["id"] == decision_id
    assert_problem(await mod.decide(mia, case, "warn", decision_id=decision_id), 409)  # id reused for another

    suspended = await mod.decide(mia, case, "suspend", reason="repeat offender", duration_hours=24)
    assert suspended.status_code == 201, suspended.text
    until = datetime.fromisoformat(suspended.json()["until"])
    assert timedelta(hours=23, minutes=59) < until - datetime.fromisoformat(suspended.json()["created_at"]) \
        <= timedelta(hours=24)
    assert_problem(await mod.decide(mia, case, "dismiss"), 409)  # acted on: no longer dismissable

    decided = await _decided(mod, 2)
    assert [(e["data"]["action"], e["data"]["author_id"], e["data"]["module"]) for e in decided] == [
        ("hide", author, "blog"), ("suspend", author, "blog")]
    assert decided[1]["data"]["duration_seconds"] == 86400
    detail = (await mod.client.get(f"/api/v1/moderation/cases/{case}", headers=mia.headers)).json()
    assert detail["state"] == "actioned" and detail["allowed_actions"] == ["delete", "warn"]
    assert await mod.queue(mia) == []
    assert [c["id"] for c in await mod.queue(mia, state="actioned")] == [case]


async def test_dismiss_closes_the_case_for_good(mod: Moderation) -> None:
    case = await _post_case(mod)
    mia = mod.person("mia", roles=("moderator",))
    assert (await mod.decide(mia, case, "dismiss", reason="satire")).status_code == 201
    assert_problem(await mod.decide(mia, case, "hide"), 409)
    assert (await mod.decide(mia, case, "dismiss")).status_code == 200  # a replay, not a conflict


@pytest.mark.parametrize(("body", "field"), [
    ({"action": "suspend", "reason": "x"}, "duration_hours"),
    ({"action": "suspend", "reason": "x", "duration_hours": 24 * 366}, "duration_hours"),
    ({"action": "hide", "reason": "x", "duration_hours": 5}, "duration_hours"),
    ({"action": "hide", "reason": "   "}, "reason"),
    ({"action": "ban", "reason": "x"}, None),
    ({"action": "hide"}, None),
    ({"action": "hide", "reason": "x", "extra": 1}, None),
    ({"action": "hide", "reason": "x" * 1001}, None),
])
async def test_bad_decisions_are_refused_and_change_nothing(mod: Moderation, body: dict[str, Any],
                                                           field: str | None) -> None:
    case = await _post_case(mod)
    mia = mod.person("mia", roles=("moderator",))
    r = await mod.client.post(f"/api/v1/moderation/cases/{case}/decisions", json=body, headers=mia.headers)
    problem = assert_problem(r, 422)
    if field:
        assert field in str(problem)
    assert len(await mod.queue(mia)) == 1


async def test_actions_a_target_cannot_undergo_and_unknown_authors(mod: Moderation) -> None:
    mia = mod.person("mia", roles=("moderator",))
    reporter = mod.person("rita")
    await mod.emit("quark.user.profile_reported", {"report_id": "p1", "user_id": mia.id, "reporter_id": reporter.id,
                                                   "reason": "spam"})
    await mod.emit("quark.media.reported", {"report_id": "m1", "media_id": "med", "reporter_id": reporter.id,
                                            "reason": "spam"})
    profile, media = await mod.queue(mia)
    assert_problem(await mod.decide(mia, profile["id"], "hide"), 422)  # a profile is not hidden, its owner is
    assert_problem(await mod.decide(mia, profile["id"], "suspend", duration_hours=1), 422)  # not oneself
    assert_problem(await mod.decide(mia, media["id"], "warn"), 409)  # nobody known to warn
    assert_problem(await mod.decide(mia, str(uuid.uuid4()), "dismiss"), 404)


async def test_decisions_are_rate_limited(quark: Any) -> None:
    from moderation_testkit import Moderation as M

    from quark_moderation.app import module

    svc = await quark.start(module, decision_rate_limit=2)
    for runner in svc.ctx.consumers:
        await eventually(lambda r=runner: r.ready.is_set(), what="consumer subscribed")
    mod = M(quark, svc)
    mia = mod.person("mia", roles=("moderator",))
    cases = []
    for _ in range(3):
        cases.append(await _post_case(mod))
    assert (await mod.decide(mia, cases[0], "dismiss")).status_code == 201
    assert (await mod.decide(mia, cases[1], "dismiss")).status_code == 201
    limited = await mod.decide(mia, cases[2], "dismiss")
    assert_problem(limited, 429)
    assert "Retry-After" in limited.headers


