"""Avatars: chosen by media id, filled in with variant URLs when the media service has processed them."""

import uuid

from user_testkit import Account, UserHarness, assert_problem, start

from quark_sdk.events import dead_letter_stream
from quark_sdk.testing import QuarkTestEnv


def variants(media_id: str) -> dict[str, str]:
    base = f"https://media.example/{media_id}"
    return {"thumb": f"{base}/thumb.webp", "medium": f"{base}/medium.webp", "original": f"{base}/original.png"}


async def processed(h: UserHarness, media_id: str, owner: Account | str, purpose: str | None = "avatar") -> None:
    owner_id = owner.id if isinstance(owner, Account) else owner
    await h.publish("quark.media.processed", {"media_id": media_id, "owner_id": owner_id, "purpose": purpose,
                                              "variants": variants(media_id), "width": 512, "height": 512,
                                              "mime_type": "image/webp"})
    await h.consumed("media")


async def test_pending_avatar_is_filled_in_by_media_processed(quark: QuarkTestEnv) -> None:
    h = await start(quark)
    alice = await h.register("alice")
    resp = await h.patch("/me", alice, json={"avatar_media_id": "m-1"})
    assert resp.status_code == 200, resp.text
    assert resp.json()["avatar"] is None
    assert resp.json()["avatar_pending_media_id"] == "m-1"
    assert await h.published("quark.user.profile_updated") == []

    await processed(h, "m-1", alice, purpose=None)
    profile = await h.profile("alice")
    assert profile["avatar"] == {"media_id": "m-1", "variants": variants("m-1")}
    assert (await h.get("/me", alice)).json()["avatar_pending_media_id"] is None
    [event] = await h.published("quark.user.profile_updated")
    assert event["avatar"] == {"media_id": "m-1", "variants": variants("m-1")}
    assert event["changed"] == ["avatar"] and event["username"] == "alice"
    assert (await h.get("/me/activity", alice)).json()["items"][0]["kind"] == "avatar_updated"

    # The same processing result arriving again (another event) changes nothing and publishes nothing.
    await processed(h, "m-1", alice)
    assert len(await h.published("quark.user.profile_updated")) == 1


async def test_avatar_processed_before_it_is_chosen_applies_at_once(quark: QuarkTestEnv) -> None:
    h = await start(quark)
    alice = await h.register("alice")
    await processed(h, "m-2", alice)
    resp = await h.patch("/me", alice, json={"avatar_media_id": "m-2", "bio": "new face"})
    assert resp.status_code == 200, resp.text
    assert resp.json()["avatar"] == {"media_id": "m-2", "variants": variants("m-2")}
    [event] = await h.published("quark.user.profile_updated")
    assert sorted(event["changed"]) == ["avatar", "bio"]

    cleared = await h.patch("/me", alice, json={"avatar_media_id": None})
    assert cleared.json()["avatar"] is None
    assert (await h.published("quark.user.profile_updated"))[-1]["avatar"] is None


async def test_someone_elses_media_never_becomes_my_avatar(quark: QuarkTestEnv) -> None:
    h = await start(quark)
    alice, bob = await h.accounts("alice", "bob")
    await processed(h, "bobs", bob)
    before = await h.snapshot()
    assert_problem(await h.patch("/me", alice, json={"avatar_media_id": "bobs"}), 422)
    assert await h.snapshot() == before

    # Pending on a media id that then turns out to belong to someone else: not applied.
    await h.patch("/me", alice, json={"avatar_media_id": "m-9"})
    await processed(h, "m-9", bob)
    assert (await h.profile("alice"))["avatar"] is None
    assert await h.published("quark.user.profile_updated") == []
    # Media for other purposes nobody waits for is not remembered.
    await processed(h, "post-image", alice, purpose="post")
    await h.patch("/me", alice, json={"avatar_media_id": "post-image"})
    assert (await h.get("/me", alice)).json()["avatar_pending_media_id"] == "post-image"


async def test_deleted_media_clears_the_avatar(quark: QuarkTestEnv) -> None:
    h = await start(quark)
    alice = await h.register("alice")
    await processed(h, "m-3", alice)
    await h.patch("/me", alice, json={"avatar_media_id": "m-3"})
    await h.publish("quark.media.deleted", {"media_id": "m-3", "owner_id": alice.id})
    await h.consumed("media")
    assert (await h.profile("alice"))["avatar"] is None
    assert (await h.published("quark.user.profile_updated"))[-1]["avatar"] is None
    # Choosing it again now only makes it pending (the media is gone).
    resp = await h.patch("/me", alice, json={"avatar_media_id": "m-3"})
    assert resp.json()["avatar"] is None and resp.json()["avatar_pending_media_id"] == "m-3"


async def test_malformed_media_event_is_dead_lettered_and_consumption_continues(quark: QuarkTestEnv) -> None:
    h = await start(quark)
    alice = await h.register("alice")
    await h.patch("/me", alice, json={"avatar_media_id": "m-4"})
    await h.publish("quark.media.processed", {"owner_id": alice.id, "variants": "not-a-dict"})
    await h.publish("quark.media.processed", {"media_id": "x" * 500, "owner_id": str(uuid.uuid4())})
    await processed(h, "m-4", alice)
    assert (await h.profile("alice"))["avatar"]["media_id"] == "m-4"
    bus = h.svc.ctx.bus
    assert bus is not None
    info = await bus.js.stream_info(dead_letter_stream(bus.namespace))
    assert info.state.messages == 2
