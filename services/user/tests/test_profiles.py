"""Profiles: created from auth events (idempotently), read, edited by their owner or an admin."""

import uuid
from datetime import UTC, datetime

from user_testkit import assert_problem, start

from quark_sdk.events import EVENT_CATALOGUE, processed_event_ids, stream_for
from quark_sdk.testing import QuarkTestEnv, eventually, read_stream


def registered(uid: uuid.UUID, username: str, display_name: str | None) -> dict[str, object]:
    return {"user_id": str(uid), "username": username, "email": f"{username}@example.com",
            "display_name": display_name, "roles": ["user"], "created_at": datetime.now(UTC).isoformat(),
            "some_future_field": {"ignored": True}}


async def test_creation_is_idempotent_under_redelivery_and_repeated_events(quark: QuarkTestEnv) -> None:
    h = await start(quark)
    uid = uuid.uuid4()
    first = await h.publish("quark.auth.user_registered", registered(uid, "alice", "Alice"))
    # The same event again, past JetStream's duplicate window (a new Nats-Msg-Id): the inbox absorbs it.
    await h.publish("quark.auth.user_registered", registered(uid, "alice", "Alice"), event_id=first.id,
                    msg_id="replay-" + first.id)
    # A *different* event for the same user (e.g. auth re-emitted it): the handler itself ignores it.
    second = await h.publish("quark.auth.user_registered", registered(uid, "alice", "Someone Else"))
    await h.consumed("auth")

    async with h.svc.ctx.database().session() as session:
        assert await processed_event_ids(session, "user-accounts") == {first.id, second.id}
    profile = await h.profile("alice")
    assert profile["user_id"] == str(uid)
    assert profile["display_name"] == "Alice"
    created = await h.published("quark.user.profile_created")
    assert created == [{"user_id": str(uid), "username": "alice", "display_name": "Alice",
                        "_type": "quark.user.profile_created"}]
    token = quark.bearer(quark.user_token(str(uid), username="alice"))
    activity = (await h.client.get("/api/v1/users/me/activity", headers=token)).json()["items"]
    assert [a["kind"] for a in activity] == ["registered"]


async def test_published_events_reach_the_user_stream(quark: QuarkTestEnv) -> None:
    h = await start(quark)
    alice = await h.register("alice", display_name="Alice")
    bus = h.svc.ctx.bus
    assert bus is not None
    stream = stream_for("user", bus.namespace)

    async def in_stream() -> list[str]:
        return [(msg.headers or {}).get("Ce-Type", "") for msg in await read_stream(bus.js, stream)]

    assert await eventually(in_stream, what="profile_created relayed") == ["quark.user.profile_created"]
    assert (await h.get("/me", alice)).json()["username"] == "alice"


async def test_consumed_event_types_are_not_registered_in_the_shared_catalogue() -> None:
    # In the embedded process auth and media register these names; registering them here would clash.
    # (Other modules imported in the same test session may register their own events: only ours matter.)
    for name in ("quark.auth.user_registered", "quark.auth.user_deleted", "quark.media.processed"):
        owner = EVENT_CATALOGUE.get(name)
        assert owner is None or not owner.__module__.startswith("quark_user"), owner
    assert EVENT_CATALOGUE["quark.user.followed"].__module__.startswith("quark_user")


async def test_me_needs_a_user_token_and_a_profile(quark: QuarkTestEnv) -> None:
    h = await start(quark)
    assert_problem(await h.client.get("/api/v1/users/me"), 401)
    service = quark.bearer(quark.service_token("blog", ("users:read",)))
    assert_problem(await h.client.get("/api/v1/users/me", headers=service), 403)
    stranger = quark.bearer(quark.user_token(str(uuid.uuid4()), username="ghost"))
    body = assert_problem(await h.client.get("/api/v1/users/me", headers=stranger), 404)
    assert "profile" in body["detail"]
    not_a_uuid = quark.bearer(quark.user_token("user-1", username="odd"))
    # The SDK's UserId: a subject that is not a user id is an invalid token (as in every module).
    assert_problem(await h.client.get("/api/v1/users/me", headers=not_a_uuid), 401)
    assert_problem(await h.client.get("/api/v1/users/nobody"), 404)


async def test_owner_edits_profile_and_the_change_is_published(quark: QuarkTestEnv) -> None:
    h = await start(quark)
    alice = await h.register("alice", display_name="Alice")
    resp = await h.patch("/me", alice, json={
        "display_name": "  Alice Liddell ", "bio": "Down the\r\nrabbit hole", "locale": "EN_gb",
        "links": ["https://wonderland.example/alice", "http://blog.example.org"], "privacy": "followers",
    })
    assert resp.status_code == 200, resp.text
    me = resp.json()
    assert me["display_name"] == "Alice Liddell"
    assert me["bio"] == "Down the\nrabbit hole"
    assert me["locale"] == "en-GB"
    assert me["links"] == ["https://wonderland.example/alice", "http://blog.example.org"]
    assert me["privacy"] == "followers"
    assert (await h.get("/alice", alice)).json()["bio"] == "Down the\nrabbit hole"

    [event] = await h.published("quark.user.profile_updated")
    assert event["user_id"] == alice.id and event["username"] == "alice"
    assert event["display_name"] == "Alice Liddell" and event["bio"] == "Down the\nrabbit hole"
    assert event["privacy"] == "followers" and event["avatar"] is None
    assert sorted(event["changed"]) == ["bio", "display_name", "links", "locale", "privacy"]

    # Sending the same values again changes nothing and publishes nothing.
    again = await h.patch("/me", alice, json={"display_name": "Alice Liddell", "privacy": "followers"})
    assert again.status_code == 200
    assert len(await h.published("quark.user.profile_updated")) == 1

    # null clears.
    cleared = (await h.patch("/me", alice, json={"display_name": None, "bio": None, "links": None,
                                                 "locale": None})).json()
    assert (cleared["display_name"], cleared["bio"], cleared["links"], cleared["locale"]) == (None, "", [], None)
    kinds = [a["kind"] for a in (await h.get("/me/activity", alice)).json()["items"]]
    assert kinds == ["profile_updated", "profile_updated", "registered"]


async def test_only_the_owner_or_an_admin_edits(quark: QuarkTestEnv) -> None:
    h = await start(quark)
    alice, bob = await h.accounts("alice", "bob")
    admin = await h.register("root", roles=("user", "admin"))
    before = await h.snapshot()
    assert_problem(await h.patch("/alice", bob, json={"bio": "pwned"}), 403)
    assert_problem(await h.patch("/alice", json={"bio": "pwned"}), 401)
    assert await h.snapshot() == before

    resp = await h.patch("/alice", admin, json={"bio": "edited by staff"})
    assert resp.status_code == 200, resp.text
    assert resp.json()["bio"] == "edited by staff"
    assert (await h.profile("alice"))["bio"] == "edited by staff"
    [entry] = [a for a in (await h.get("/me/activity", alice)).json()["items"] if a["kind"] == "profile_updated"]
    assert entry["data"] == {"fields": ["bio"], "actor_id": admin.id}
    assert_problem(await h.patch("/nobody", admin, json={"bio": "x"}), 404)
