"""The user's own activity history: their actions and account events from the auth service."""

import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import text
from user_testkit import assert_problem, start

from quark_sdk.events import dead_letter_stream
from quark_sdk.testing import QuarkTestEnv
from quark_user import activity


async def test_activity_log_collects_logins_password_changes_follows_and_edits(quark: QuarkTestEnv) -> None:
    h = await start(quark)
    alice, bob = await h.accounts("alice", "bob")
    login_at = datetime.now(UTC).replace(microsecond=0)
    await h.publish("quark.auth.user_verified", {"user_id": alice.id, "username": "alice"})
    await h.publish("quark.auth.user_logged_in", {"user_id": alice.id, "username": "alice", "ip": "203.0.113.7",
                                                  "user_agent": "Firefox/140", "at": login_at.isoformat()})
    await h.publish("quark.auth.password_changed", {"user_id": alice.id, "reason": "reset"})
    await h.publish("quark.auth.role_changed", {"user_id": alice.id, "username": "alice", "role": "moderator",
                                                "action": "granted", "actor_id": str(uuid.uuid4())})
    await h.consumed("auth")
    await h.post("/bob/follow", alice)
    await h.patch("/me", alice, json={"bio": "hello"})
    # Bob's logins are not in Alice's history.
    await h.publish("quark.auth.user_logged_in", {"user_id": bob.id, "username": "bob", "ip": None})
    await h.consumed("auth")

    items = (await h.get("/me/activity", alice)).json()["items"]
    assert [i["kind"] for i in items] == ["profile_updated", "followed", "role_changed", "password_changed",
                                          "login", "verified", "registered"]
    login = items[4]
    assert login["data"] == {"ip": "203.0.113.7", "user_agent": "Firefox/140"}
    assert datetime.fromisoformat(login["at"]) == login_at
    assert items[1]["target"] == {"user_id": bob.id, "username": "bob"}
    assert items[2]["data"]["role"] == "moderator" and items[2]["data"]["action"] == "granted"
    assert items[3]["data"] == {"reason": "reset"}
    me = (await h.get("/me", alice)).json()
    assert me["verified"] is True and "moderator" in me["roles"]
    assert datetime.fromisoformat(me["last_login_at"]) == login_at

    # Paginated, filterable, and private.
    walked = await h.all_pages("/me/activity", alice, limit=3)
    assert [i["id"] for i in walked] == [i["id"] for i in items]
    logins = (await h.get("/me/activity", alice, params={"kind": "login"})).json()["items"]
    assert [i["kind"] for i in logins] == ["login"]
    assert_problem(await h.get("/me/activity", alice, params={"kind": "teleported"}), 422)
    assert_problem(await h.get("/me/activity"), 401)
    assert [i["kind"] for i in (await h.get("/me/activity", bob)).json()["items"]] == ["login", "registered"]


async def test_login_of_an_account_never_seen_backfills_its_profile(quark: QuarkTestEnv) -> None:
    h = await start(quark)
    uid = uuid.uuid4()
    await h.publish("quark.auth.user_logged_in", {"user_id": str(uid), "username": "olduser", "ip": "10.1.1.1"})
    await h.consumed("auth")
    assert (await h.profile("olduser"))["user_id"] == str(uid)
    assert len(await h.published("quark.user.profile_created")) == 1
    # A password change for an account with no profile and no username cannot create one: ignored.
    await h.publish("quark.auth.password_changed", {"user_id": str(uuid.uuid4())})
    await h.consumed("auth")
    assert len(await h.published("quark.user.profile_created")) == 1


async def test_old_activity_is_purged(quark: QuarkTestEnv) -> None:
    h = await start(quark)
    alice = await h.register("alice")
    await h.patch("/me", alice, json={"bio": "recent"})
    db = h.svc.ctx.database()
    async with db.transaction() as session:
        await session.execute(text("UPDATE activity SET created_at = now() - interval '400 days' "
                                   "WHERE kind = 'registered'"))
    async with db.session() as session:
        assert await activity.purge_activity(session, older_than=timedelta(days=365)) == 1
    assert [i["kind"] for i in (await h.get("/me/activity", alice)).json()["items"]] == ["profile_updated"]


async def test_auth_event_with_unstorable_text_is_dead_lettered(quark: QuarkTestEnv) -> None:
    h = await start(quark)
    alice = await h.register("alice")
    await h.publish("quark.auth.user_logged_in", {"user_id": alice.id, "username": "alice", "user_agent": "a\x00b"})
    await h.publish("quark.auth.user_logged_in", {"user_id": "not-a-uuid", "username": "x"})
    await h.publish("quark.auth.password_changed", {"user_id": alice.id})
    await h.consumed("auth")
    kinds = [i["kind"] for i in (await h.get("/me/activity", alice)).json()["items"]]
    assert kinds == ["password_changed", "registered"]
    bus = h.svc.ctx.bus
    assert bus is not None
    assert (await bus.js.stream_info(dead_letter_stream(bus.namespace))).state.messages == 2
