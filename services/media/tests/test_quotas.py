"""Per-user quotas: item count and bytes, checked before and (under a lock) after storing."""

import asyncio
from pathlib import Path

from media_testkit import API, assert_problem, jpeg, png, start

from quark_sdk.testing import QuarkTestEnv


async def test_count_quota(quark: QuarkTestEnv, tmp_path: Path) -> None:
    h = await start(quark, tmp_path, quota_max_count=2)
    alice, bob = h.account(), h.account()
    first = await h.ready(alice, png(10, 10))
    await h.ready(alice, png(11, 10))
    before = await h.snapshot()
    body = assert_problem(await h.upload(alice, png(12, 10)), 403)
    assert body["type"].endswith("/quota-exceeded")
    assert await h.snapshot() == before
    await h.upload_ok(bob, png(12, 10))  # quotas are per user
    # Deleting gives the slot back.
    assert (await h.client.delete(f"{API}/{first['id']}", headers=alice.headers)).status_code == 204
    await h.upload_ok(alice, png(13, 10))


async def test_bytes_quota(quark: QuarkTestEnv, tmp_path: Path) -> None:
    small = png(50, 50, gps=False)
    h = await start(quark, tmp_path, quota_max_bytes=len(small) * 2 + 100)
    alice = h.account()
    await h.ready(alice, small)
    before = await h.snapshot()
    big = jpeg(800, 800, gps=False, quality=95)
    assert len(big) > len(small) + 100
    assert_problem(await h.upload(alice, big), 403)  # stopped while streaming: past the remaining bytes
    assert await h.snapshot() == before
    await h.upload_ok(alice, small)
    usage = (await h.client.get(f"{API}/usage", headers=alice.headers)).json()
    assert usage == {"count": 2, "bytes": 2 * len(small), "max_count": 1000, "max_bytes": len(small) * 2 + 100}


async def test_concurrent_uploads_cannot_overshoot_the_count(quark: QuarkTestEnv, tmp_path: Path) -> None:
    h = await start(quark, tmp_path, quota_max_count=3)
    alice = h.account()
    results = await asyncio.gather(*(h.upload(alice, png(10 + i, 10, gps=False)) for i in range(6)))
    codes = sorted(r.status_code for r in results)
    assert codes.count(201) == 3 and all(c == 403 for c in codes if c != 201), codes
    usage = (await h.client.get(f"{API}/usage", headers=alice.headers)).json()
    assert usage["count"] == 3
    ids = {r.json()["id"] for r in results if r.status_code == 201}
    for media_id in ids:
        await h.settled(media_id, alice)
    assert {k.split("/")[1] for k in await h.objects()} == ids  # refused uploads left no objects


async def test_upload_rate_limit(quark: QuarkTestEnv, tmp_path: Path) -> None:
    h = await start(quark, tmp_path, upload_rate_limit=2, upload_rate_window=3600)
    alice, bob = h.account(), h.account()
    await h.ready(alice, png(10, 10))
    await h.ready(alice, png(11, 10))
    before = await h.snapshot()
    resp = await h.upload(alice, png(12, 10))
    assert_problem(resp, 429)
    assert int(resp.headers["retry-after"]) >= 1
    assert await h.snapshot() == before
    await h.upload_ok(bob, png(12, 10))  # per user
