"""Serving and permissions: metadata, variants with ETag/304 and cache headers, lists, deletion."""

import uuid
from pathlib import Path

from media_testkit import API, assert_problem, jpeg, png, start

from quark_sdk.testing import QuarkTestEnv


async def test_variant_etag_and_conditional_requests(quark: QuarkTestEnv, tmp_path: Path) -> None:
    h = await start(quark, tmp_path)
    alice = h.account()
    media = await h.ready(alice)
    url = media["variants"]["medium"]["url"]
    first = await h.fetch(url)  # anonymous: ready media are public
    assert first.status_code == 200
    etag = first.headers["etag"]
    assert etag.startswith('"') and etag.endswith('"')
    assert first.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert first.headers["x-content-type-options"] == "nosniff"
    assert "sandbox" in first.headers["content-security-policy"]
    assert int(first.headers["content-length"]) == len(first.content) == media["variants"]["medium"]["size"]

    for header in (etag, f"W/{etag}", f'"other", {etag}', "*"):
        again = await h.fetch(url, headers={"If-None-Match": header})
        assert again.status_code == 304, header
        assert again.content == b"" and again.headers["etag"] == etag
    changed = await h.fetch(url, headers={"If-None-Match": '"something-else"'})
    assert changed.status_code == 200 and changed.content == first.content

    head = await h.client.head(url)
    assert head.status_code == 200 and head.headers["etag"] == etag and head.content == b""
    assert head.headers["content-length"] == str(len(first.content))


async def test_not_found_cases(quark: QuarkTestEnv, tmp_path: Path) -> None:
    h = await start(quark, tmp_path)
    alice = h.account()
    media = await h.ready(alice)
    for path in (
        f"/{uuid.uuid4()}",
        "/not-a-uuid",
        f"/{media['id']}/variants/huge",
        f"/{uuid.uuid4()}/variants/thumb",
        "/%00",
        f"/{'x' * 64}",
    ):
        assert_problem(await h.client.get(API + path), 404)
    assert_problem(await h.client.get(f"{API}/{'x' * 65}"), 422)


async def test_metadata_visibility(quark: QuarkTestEnv, tmp_path: Path) -> None:
    h = await start(quark, tmp_path)
    alice, bob = h.account(), h.account()
    admin = h.account(roles=("user", "admin"))
    media = await h.ready(alice, jpeg(), filename="holiday.jpg")
    mine = (await h.client.get(f"{API}/{media['id']}", headers=alice.headers)).json()
    assert mine["filename"] == "holiday.jpg"
    theirs = (await h.client.get(f"{API}/{media['id']}", headers=bob.headers)).json()
    assert theirs["filename"] is None and theirs["status"] == "ready" and theirs["variants"]
    anon = (await h.client.get(f"{API}/{media['id']}")).json()
    assert anon["filename"] is None
    assert (await h.client.get(f"{API}/{media['id']}", headers=admin.headers)).json()["filename"] == "holiday.jpg"

    # Media that is not ready is only visible to its owner (and admins).
    await h.sql("UPDATE media SET status = 'failed', error = 'boom' WHERE id = :id", id=uuid.UUID(media["id"]))
    assert_problem(await h.client.get(f"{API}/{media['id']}", headers=bob.headers), 404)
    assert_problem(await h.client.get(media["variants"]["thumb"]["url"]), 404)
    assert (await h.client.get(f"{API}/{media['id']}", headers=alice.headers)).json()["error"] == "boom"


async def test_owner_lists_own_media_with_pagination(quark: QuarkTestEnv, tmp_path: Path) -> None:
    h = await start(quark, tmp_path)
    alice, bob = h.account(), h.account()
    admin = h.account(roles=("user", "admin"))
    ids = [(await h.upload_ok(alice, png(20 + i, 20)))["id"] for i in range(5)]
    await h.upload_ok(bob, png(30, 30))
    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = (await h.client.get(API, params=params, headers=alice.headers)).json()
        seen += [m["id"] for m in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == list(reversed(ids))
    assert_problem(await h.client.get(API, params={"cursor": "bogus!"}, headers=alice.headers), 422)
    assert_problem(await h.client.get(API, params={"limit": 0}, headers=alice.headers), 422)
    assert_problem(await h.client.get(API, params={"status": "weird"}, headers=alice.headers), 422)
    assert_problem(await h.client.get(API), 401)
    assert_problem(await h.client.get(API, params={"owner_id": alice.id}, headers=bob.headers), 403)
    as_admin = (await h.client.get(API, params={"owner_id": alice.id, "limit": 100}, headers=admin.headers)).json()
    assert len(as_admin["items"]) == 5


async def test_only_owner_or_admin_deletes_and_objects_go_too(quark: QuarkTestEnv, tmp_path: Path) -> None:
    h = await start(quark, tmp_path)
    alice, bob = h.account(), h.account()
    admin = h.account(roles=("user", "admin"))
    one = await h.ready(alice)
    two = await h.ready(alice, png())
    objects = await h.objects()
    assert len(objects) == 6

    assert_problem(await h.client.delete(f"{API}/{one['id']}", headers=bob.headers), 403)
    assert_problem(await h.client.delete(f"{API}/{one['id']}"), 401)
    assert await h.objects() == objects

    assert (await h.client.delete(f"{API}/{one['id']}", headers=alice.headers)).status_code == 204
    assert_problem(await h.client.get(f"{API}/{one['id']}", headers=alice.headers), 404)
    assert_problem(await h.client.get(one["variants"]["thumb"]["url"]), 404)
    assert not any(one["id"] in k for k in await h.objects())
    assert_problem(await h.client.delete(f"{API}/{one['id']}", headers=alice.headers), 404)

    assert (await h.client.delete(f"{API}/{two['id']}", headers=admin.headers)).status_code == 204
    assert await h.objects() == []
    events = await h.published("quark.media.deleted")
    assert [(e["media_id"], e["owner_id"], e["reason"]) for e in events] == [
        (one["id"], alice.id, "owner"),
        (two["id"], alice.id, "admin"),
    ]
    usage = (await h.client.get(f"{API}/usage", headers=alice.headers)).json()
    assert usage["count"] == 0 and usage["bytes"] == 0
