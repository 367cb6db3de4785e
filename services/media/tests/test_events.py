"""Events in and out: attachment from posts and profiles, account deletion, orphan sweep, crash recovery."""

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from media_testkit import API, assert_problem, jpeg, png, start

from quark_media import ingest
from quark_sdk.testing import QuarkTestEnv, eventually


def post_event(author: str, media_ids: list[str]) -> dict[str, object]:
    return {
        "post_id": str(uuid.uuid4()),
        "author_id": author,
        "author_username": "a",
        "title": "t",
        "slug": "t",
        "excerpt": "",
        "body_text": "",
        "tags": [],
        "visibility": "public",
        "media_ids": media_ids,
        "published_at": datetime.now(UTC).isoformat(),
    }


async def attached(h, media_id: str, who) -> bool:  # type: ignore[no-untyped-def]
    return bool((await h.client.get(f"{API}/{media_id}", headers=who.headers)).json()["attached"])


async def test_posts_and_avatars_attach_only_their_owners_media(quark: QuarkTestEnv, tmp_path: Path) -> None:
    h = await start(quark, tmp_path)
    alice, bob = h.account(), h.account()
    a1 = await h.upload_ok(alice, png(10, 10))
    a2 = await h.upload_ok(alice, png(11, 10))
    b1 = await h.upload_ok(bob, png(12, 10))
    assert not await attached(h, a1["id"], alice)

    await h.publish("quark.post.published", post_event(alice.id, [a1["id"], b1["id"], "not-a-uuid"]))
    await h.consumed("post")
    assert await attached(h, a1["id"], alice)
    assert not await attached(h, b1["id"], bob)  # not alice's to attach

    await h.publish(
        "quark.user.profile_updated",
        {
            "user_id": alice.id,
            "username": "alice",
            "display_name": None,
            "bio": "",
            "privacy": "public",
            "avatar": {"media_id": a2["id"], "variants": {}},
        },
    )
    await h.consumed("user")
    assert await attached(h, a2["id"], alice)

    # The attach endpoint: the owner (or a module) may; others get 404.
    assert_problem(await h.client.post(f"{API}/{b1['id']}/attach", headers=alice.headers), 404)
    svc = quark.bearer(quark.service_token("blog", ()))
    resp = await h.client.post(f"{API}/{b1['id']}/attach", headers=svc)
    assert resp.status_code == 200 and resp.json()["attached"] is True


async def test_orphans_are_swept_and_attached_media_kept(quark: QuarkTestEnv, tmp_path: Path) -> None:
    h = await start(quark, tmp_path, orphan_ttl=3600, orphan_sweep_interval=0.05)
    alice = h.account()
    keep = await h.ready(alice, png(10, 10))
    orphan = await h.ready(alice, png(11, 10))
    fresh = await h.ready(alice, png(12, 10))
    assert (await h.client.post(f"{API}/{keep['id']}/attach", headers=alice.headers)).status_code == 200
    await h.sql(
        "UPDATE media SET created_at = now() - interval '2 hours' WHERE id IN (:a, :b)",
        a=uuid.UUID(keep["id"]),
        b=uuid.UUID(orphan["id"]),
    )

    async def swept() -> bool:
        return bool(await h.published("quark.media.deleted"))

    await eventually(swept, what="orphan sweep")
    [event] = await h.published("quark.media.deleted")
    assert (event["media_id"], event["owner_id"], event["reason"]) == (orphan["id"], alice.id, "orphan")
    left = {k.split("/")[1] for k in await h.objects()}
    assert left == {keep["id"], fresh["id"]}
    usage = (await h.client.get(f"{API}/usage", headers=alice.headers)).json()
    assert usage["count"] == 2


async def test_account_deletion_removes_media_and_objects(quark: QuarkTestEnv, tmp_path: Path) -> None:
    h = await start(quark, tmp_path)
    alice, bob = h.account(), h.account()
    mine = [await h.ready(alice, png(10 + i, 10)) for i in range(2)]
    theirs = await h.ready(bob)
    await h.publish("quark.auth.user_deleted", {"user_id": alice.id, "username": "alice"})
    await h.consumed("auth")
    assert {k.split("/")[0] for k in await h.objects()} == {bob.id}
    for m in mine:
        assert_problem(await h.client.get(f"{API}/{m['id']}"), 404)
    events = await h.published("quark.media.deleted")
    assert sorted(e["media_id"] for e in events) == sorted(m["id"] for m in mine)
    assert {e["reason"] for e in events} == {"account_deleted"}
    assert (await h.client.get(f"{API}/{theirs['id']}")).status_code == 200
    # Redelivered (or a second event for the same account): nothing more happens.
    await h.publish("quark.auth.user_deleted", {"user_id": alice.id, "username": "alice"})
    await h.consumed("auth")
    assert len(await h.published("quark.media.deleted")) == 2


async def test_lost_processing_is_recovered(quark: QuarkTestEnv, tmp_path: Path) -> None:
    """A crash between upload and processing leaves an `uploaded` row; recovery finishes the job."""
    h = await start(quark, tmp_path, recovery_interval=3600)
    alice = h.account()
    rt = h.rt
    media_id = uuid.uuid4()
    key = f"{alice.id}/{media_id}/source"
    data = jpeg()
    await rt.storage.put(key, data, content_type="image/jpeg")
    await h.sql(
        "INSERT INTO media (id, owner_id, status, mime_type, size, source_key, updated_at) "
        "VALUES (:id, :owner, 'uploaded', 'image/jpeg', :size, :key, now() - interval '1 minute')",
        id=media_id,
        owner=alice.user_id,
        size=len(data),
        key=key,
    )
    stuck = uuid.uuid4()
    await h.sql(
        "INSERT INTO media (id, owner_id, status, mime_type, size, source_key, processing_started_at, attempts) "
        "VALUES (:id, :owner, 'processing', 'image/jpeg', 10, :key, now() - interval '1 day', 3)",
        id=stuck,
        owner=alice.user_id,
        key=f"{alice.id}/{stuck}/source",
    )  # its source is gone

    await ingest.recover(rt, settle=timedelta(0))  # the startup pass of the job may have taken some already
    ready = await h.settled(str(media_id), alice)
    assert ready["status"] == "ready" and ready["width"] == 640
    failed = await h.settled(str(stuck), alice)
    assert failed["status"] == "failed" and "missing" in failed["error"]
    [event] = await h.published("quark.media.failed")
    assert event["media_id"] == str(stuck) and event["owner_id"] == alice.id
    assert key not in await h.objects()  # the raw upload is gone once processed


async def test_deleting_while_processing_leaves_no_objects(quark: QuarkTestEnv, tmp_path: Path) -> None:
    h = await start(quark, tmp_path)
    alice = h.account()
    created = await h.upload_ok(alice, jpeg(1600, 1200))
    assert (await h.client.delete(f"{API}/{created['id']}", headers=alice.headers)).status_code == 204

    async def clean() -> bool:
        return not h.rt.tasks and await h.objects() == []

    await eventually(clean, what="processing finished and cleaned up")
    assert await h.published("quark.media.processed") == []
