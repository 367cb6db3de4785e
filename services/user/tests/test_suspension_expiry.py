"""Timed suspensions end by themselves: the admin's `duration_hours`/`until` and a moderation decision's
`until` are stored as `suspended_until`; the expiry job reinstates the account once, through the outbox,
exactly as a manual unsuspend does. The job takes its clock as an argument (`at=`), so no test sleeps."""

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import text
from test_sanctions import decided
from user_testkit import UserHarness, assert_problem, start

from quark_sdk.testing import QuarkTestEnv, eventually
from quark_user.accounts import lift_expired_suspensions

ENDED = {"suspended": False, "reason": "suspension ended", "actor_id": "system", "_type": "quark.user.suspended"}


async def lift(h: UserHarness, at: datetime) -> int:
    async with h.svc.ctx.database().session() as session:
        return await lift_expired_suspensions(session, at=at)


async def admin_view(h: UserHarness, admin: Any, username: str) -> dict[str, Any]:
    [row] = [u for u in (await h.get("/admin/users", admin, params={"q": username})).json()["items"]
             if u["username"] == username]
    return dict(row)


async def test_the_job_lifts_only_ended_suspensions_and_announces_each_once(quark: QuarkTestEnv) -> None:
    h = await start(quark, suspension_check_interval=3600)  # the service's own job stays out of the way
    admin = await h.register("root", roles=("user", "admin"))
    bob, carol, dave, _erin = await h.accounts("bob", "carol", "dave", "erin")
    t0 = datetime.now(UTC)

    resp = await h.post("/admin/users/bob/suspend", admin, json={"reason": "spam", "duration_hours": 2})
    assert resp.status_code == 200, resp.text
    bob_until = datetime.fromisoformat(resp.json()["suspended_until"])
    assert t0 + timedelta(hours=2) <= bob_until <= datetime.now(UTC) + timedelta(hours=2)
    assert (await h.post("/admin/users/dave/suspend", admin, json={})).json()["suspended_until"] is None
    erin_until = t0 + timedelta(days=30)
    resp = await h.post("/admin/users/erin/suspend", admin, json={"until": erin_until.isoformat()})
    assert datetime.fromisoformat(resp.json()["suspended_until"]) == erin_until
    carol_until = t0 + timedelta(days=1)
    await h.publish("quark.moderation.decided", decided(carol.id, "suspend", until=carol_until.isoformat()))
    await h.consumed("moderation")
    assert datetime.fromisoformat((await admin_view(h, admin, "carol"))["suspended_until"]) == carol_until

    assert await lift(h, t0 + timedelta(hours=1)) == 0  # nothing has ended yet
    assert await lift(h, t0 + timedelta(hours=3)) == 1  # bob's two hours are over
    assert await lift(h, t0 + timedelta(hours=3)) == 0  # idempotent
    ended = [e for e in await h.published("quark.user.suspended") if e["suspended"] is False]
    assert ended == [{"user_id": bob.id, **ENDED}]
    bob_row = await admin_view(h, admin, "bob")
    assert bob_row["suspended"] is False
    assert (bob_row["suspended_until"], bob_row["suspended_reason"], bob_row["suspended_by"]) == (None, None, None)
    kinds = [a["kind"] for a in (await h.get("/me/activity", bob)).json()["items"]]
    assert kinds[0] == "unsuspended"
    assert (await h.patch("/me", bob, json={"bio": "back"})).status_code == 200  # writing again

    assert await lift(h, t0 + timedelta(days=2)) == 1  # carol's day is over; erin's month and dave's forever not
    ended = [e["user_id"] for e in await h.published("quark.user.suspended") if e["suspended"] is False]
    assert ended == [bob.id, carol.id]
    assert (await admin_view(h, admin, "dave"))["suspended"] is True
    assert (await admin_view(h, admin, "erin"))["suspended"] is True
    assert await lift(h, t0 + timedelta(days=3650)) == 1  # erin, eventually; dave never
    assert (await admin_view(h, admin, "dave"))["suspended"] is True
    assert dave.id not in [e["user_id"] for e in await h.published("quark.user.suspended") if not e["suspended"]]


async def test_two_concurrent_runs_announce_each_end_once(quark: QuarkTestEnv) -> None:
    h = await start(quark, suspension_check_interval=3600)
    admin = await h.register("root", roles=("user", "admin"))
    people = await h.accounts(*(f"user{i}" for i in range(6)))
    for p in people:
        resp = await h.post(f"/admin/users/{p.username}/suspend", admin, json={"duration_hours": 1})
        assert resp.status_code == 200, resp.text
    later = datetime.now(UTC) + timedelta(hours=2)
    counts = await asyncio.gather(lift(h, later), lift(h, later), lift(h, later))
    assert sum(counts) == len(people)
    ended = sorted(e["user_id"] for e in await h.published("quark.user.suspended") if e["suspended"] is False)
    assert ended == sorted(p.id for p in people)


async def test_the_service_runs_the_job(quark: QuarkTestEnv) -> None:
    """The real background job, real clock: an end set in the past is lifted within the check interval."""
    h = await start(quark, suspension_check_interval=0.2)
    admin = await h.register("root", roles=("user", "admin"))
    (bob,) = await h.accounts("bob")
    assert (await h.post("/admin/users/bob/suspend", admin, json={"duration_hours": 1})).status_code == 200
    async with h.svc.ctx.database().transaction() as session:
        await session.execute(text("UPDATE profiles SET suspended_until = now() - interval '1 minute' "
                                   "WHERE username = 'bob'"))

    async def lifted() -> bool:
        return any(e["suspended"] is False for e in await h.published("quark.user.suspended"))

    await eventually(lifted, what="bob's suspension lifted by the job")
    assert [e for e in await h.published("quark.user.suspended") if not e["suspended"]] == [
        {"user_id": bob.id, **ENDED}]
    assert (await h.profile("bob"))["suspended"] is False


async def test_manual_unsuspend_and_a_new_suspension_replace_the_end(quark: QuarkTestEnv) -> None:
    h = await start(quark, suspension_check_interval=3600)
    admin = await h.register("root", roles=("user", "admin"))
    await h.accounts("bob")
    now = datetime.now(UTC)
    for bad in ({"duration_hours": 0}, {"duration_hours": 365 * 24 + 1}, {"duration_hours": "soon"},
                {"until": (now - timedelta(minutes=1)).isoformat()},
                {"until": (now + timedelta(days=400)).isoformat()},
                {"until": (now + timedelta(days=1)).replace(tzinfo=None).isoformat()},  # no time zone
                {"until": "tomorrow"},
                {"duration_hours": 1, "until": (now + timedelta(days=1)).isoformat()}):
        assert_problem(await h.post("/admin/users/bob/suspend", admin, json=bad), 422)
    assert (await h.profile("bob"))["suspended"] is False  # bad input changed nothing

    assert (await h.post("/admin/users/bob/suspend", admin, json={"duration_hours": 1})).status_code == 200
    resp = await h.post("/admin/users/bob/unsuspend", admin)
    assert resp.status_code == 200 and resp.json()["suspended_until"] is None
    # A new, indefinite suspension: the old end is gone, so the job leaves it alone.
    assert (await h.post("/admin/users/bob/suspend", admin)).json()["suspended_until"] is None
    assert await lift(h, now + timedelta(days=3650)) == 0
    assert (await h.profile("bob"))["suspended"] is True


async def test_a_later_decision_extends_a_timed_suspension_never_shortens_it(quark: QuarkTestEnv) -> None:
    h = await start(quark, suspension_check_interval=3600)
    admin = await h.register("root", roles=("user", "admin"))
    bob, carol = await h.accounts("bob", "carol")
    now = datetime.now(UTC)

    async def decide(who: Any, until: datetime | None) -> None:
        extra = {"until": until.isoformat()} if until else {}
        await h.publish("quark.moderation.decided", decided(who.id, "suspend", **extra))
        await h.consumed("moderation")

    async def until_of(username: str) -> str | None:
        return (await admin_view(h, admin, username))["suspended_until"]

    await decide(bob, now + timedelta(days=1))
    await decide(bob, now + timedelta(days=3))  # later: extends
    assert datetime.fromisoformat(await until_of("bob") or "") == now + timedelta(days=3)
    await decide(bob, now + timedelta(hours=1))  # earlier: the longer one stands
    assert datetime.fromisoformat(await until_of("bob") or "") == now + timedelta(days=3)
    await decide(bob, None)  # without an end: indefinite
    assert await until_of("bob") is None
    assert len(await h.published("quark.user.suspended")) == 1  # auth heard of the suspension once

    await decide(carol, now - timedelta(minutes=5))  # delivered after its end: nothing to enforce
    assert (await h.profile("carol"))["suspended"] is False
    assert carol.id not in [e["user_id"] for e in await h.published("quark.user.suspended")]
