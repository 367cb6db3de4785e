"""Account deletion (quark.auth.user_deleted): the profile is anonymised, the user's graph and activity go."""

import uuid
from datetime import UTC, datetime

from sqlalchemy import text
from user_testkit import start

from quark_sdk.testing import QuarkTestEnv


async def test_deletion_anonymises_profile_and_removes_graph_and_activity(quark: QuarkTestEnv) -> None:
    h = await start(quark)
    alice, bob, carol, dave = await h.accounts("alice", "bob", "carol", "dave")
    await h.patch("/me", alice, json={"display_name": "Alice", "bio": "bye", "links": ["https://a.example"],
                                      "locale": "en", "privacy": "followers"})
    await h.post("/bob/follow", alice)
    await h.post("/alice/follow", carol)
    await h.post("/me/follow-requests/carol/approve", alice)
    await h.post("/alice/follow", dave)  # stays a pending request
    await h.post("/dave/block", alice)
    await h.post("/carol/mute", alice)
    await h.post("/alice/mute", bob)
    await h.publish("quark.auth.user_logged_in", {"user_id": alice.id, "username": "alice", "ip": "10.0.0.1",
                                                  "user_agent": "curl", "at": datetime.now(UTC).isoformat()})
    await h.consumed("auth")

    await h.publish("quark.auth.user_deleted", {"user_id": alice.id, "username": "alice"})
    await h.consumed("auth")

    assert (await h.get("/alice")).status_code == 404
    assert (await h.get("/me", alice)).status_code == 404
    assert (await h.profile("bob"))["followers_count"] == 0
    assert (await h.profile("carol"))["following_count"] == 0
    await h.graph_consistent()
    async with h.svc.ctx.database().session() as session:
        row = (await session.execute(text(
            "SELECT username, display_name, bio, links, locale, avatar_media_id, roles, deleted_at IS NOT NULL "
            "FROM profiles WHERE user_id = :id"), {"id": alice.user_id})).one()
        assert tuple(row) == (f"deleted-{alice.user_id.hex}", None, "", [], None, None, [], True)
        for table, cols in (("follows", ("follower_id", "followee_id")),
                            ("follow_requests", ("requester_id", "target_id")),
                            ("blocks", ("blocker_id", "blocked_id")), ("mutes", ("muter_id", "muted_id")),
                            ("activity", ("user_id", "target_id"))):
            n = await session.scalar(text(f"SELECT count(*) FROM {table} WHERE {cols[0]} = :id OR {cols[1]} = :id"),  # noqa: S608
                                     {"id": alice.user_id})
            assert n == 0, table
    # Other people's history keeps the entry but no longer names the deleted account.
    carol_items = (await h.get("/me/activity", carol)).json()["items"]
    requested = [a for a in carol_items if a["kind"] == "follow_requested"]
    assert requested and requested[0]["target"] is None
    assert (await h.get("/me/follow-requests", dave)).json()["items"] == []
    assert (await h.get("/search", params={"q": "ali"})).json()["items"] == []
    assert await h.published("quark.user.deleted") == [{"user_id": alice.id, "_type": "quark.user.deleted"}]

    # A second deletion event and a late registration event change nothing.
    await h.publish("quark.auth.user_deleted", {"user_id": alice.id, "username": "alice"})
    await h.publish("quark.auth.user_registered", {"user_id": alice.id, "username": "alice",
                                                   "email": "a@example.com", "display_name": None, "roles": []})
    await h.consumed("auth")
    assert (await h.get("/alice")).status_code == 404
    assert len(await h.published("quark.user.deleted")) == 1
    # The username is free again for a new account.
    again = await h.register("alice")
    assert (await h.profile("alice"))["user_id"] == again.id != alice.id


async def test_deleting_an_unknown_account_leaves_a_tombstone(quark: QuarkTestEnv) -> None:
    h = await start(quark)
    uid = uuid.uuid4()
    await h.publish("quark.auth.user_deleted", {"user_id": str(uid), "username": "ghost"})
    await h.publish("quark.auth.user_registered", {"user_id": str(uid), "username": "ghost",
                                                   "email": "g@example.com", "roles": []})
    await h.consumed("auth")
    assert (await h.get("/ghost")).status_code == 404
    assert await h.published("quark.user.deleted") == [{"user_id": str(uid), "_type": "quark.user.deleted"}]
    assert await h.published("quark.user.profile_created") == []
