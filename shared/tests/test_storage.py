"""Object storage: the same behaviour from the local driver (tmp_path) and the S3 driver.

The S3 driver runs against a real S3-compatible HTTP server: moto in server mode on a
free 127.0.0.1 port, one per test session, with a fresh bucket per test.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
import tracemalloc
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
from moto.server import ThreadedMotoServer

from quark_sdk.errors import Conflict, InvalidInput, NotFound, PayloadTooLarge
from quark_sdk.storage import (
    MIN_PART_SIZE,
    LocalStorage,
    ObjectStorage,
    S3Storage,
    StoredObject,
    storage_from_url,
)

ACCESS, SECRET, REGION = "quark-test", "quark-test-secret", "us-east-1"
MiB = 1024 * 1024


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"{host}:{port}"
    server.stop()


def new_s3(endpoint: str, bucket: str | None = None) -> S3Storage:
    # The smallest legal part size, so a multi-part upload needs only ~11 MiB.
    return S3Storage(
        endpoint,
        ACCESS,
        SECRET,
        bucket or f"quark-{uuid.uuid4().hex[:16]}",
        region=REGION,
        part_size=MIN_PART_SIZE,
    )


@pytest.fixture(params=["local", "s3"])
async def storage(request: pytest.FixtureRequest, tmp_path: Path) -> ObjectStorage:
    store: ObjectStorage
    if request.param == "local":
        store = LocalStorage(tmp_path / "store")
    else:
        store = new_s3(request.getfixturevalue("s3_endpoint"))
    await store.ensure_bucket()
    return store


def pending_multipart_uploads(endpoint: str, bucket: str) -> list[dict[str, Any]]:
    """Ask the server directly (boto3), so the check does not trust the driver under test."""
    client = boto3.client(
        "s3",
        endpoint_url=f"http://{endpoint}",
        aws_access_key_id=ACCESS,
        aws_secret_access_key=SECRET,
        region_name=REGION,
    )
    return list(client.list_multipart_uploads(Bucket=bucket).get("Uploads", []))


async def stream(data: bytes, chunk: int = 64 * 1024) -> AsyncIterator[bytes]:
    for i in range(0, len(data), chunk):
        yield data[i : i + chunk]


async def read_all(store: ObjectStorage, key: str, chunk_size: int = 65536) -> list[bytes]:
    return [chunk async for chunk in await store.open(key, chunk_size=chunk_size)]


def md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


async def assert_nothing_stored(store: ObjectStorage, key: str) -> None:
    assert await store.stat(key) is None
    assert await store.list() == []
    with pytest.raises(NotFound):
        await store.open(key)
    if isinstance(store, LocalStorage):
        # No temp file survives a failed upload.
        assert list((store.root / "tmp").iterdir()) == []


# --------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("size", [0, 300 * 1024 + 17])
async def test_streamed_round_trip(storage: ObjectStorage, size: int) -> None:
    data = os.urandom(size)
    stored = await storage.put("media/42/original.png", stream(data, 8 * 1024), content_type="image/png")
    assert stored.key == "media/42/original.png"
    assert stored.size == size
    assert stored.content_type == "image/png"
    assert stored.etag == md5(data)

    chunks = await read_all(storage, "media/42/original.png", chunk_size=16 * 1024)
    assert b"".join(chunks) == data
    assert all(len(c) <= 16 * 1024 for c in chunks)
    if size:
        assert len(chunks) >= size // (16 * 1024)  # really streamed in pieces, not one blob


async def test_multipart_sized_stream_round_trip(storage: ObjectStorage) -> None:
    """Larger than two S3 parts: exercises the multipart path of the S3 driver."""
    data = os.urandom(11 * MiB + 123)
    stored = await storage.put("big.bin", stream(data, 256 * 1024), content_type="application/x-big")
    assert stored.size == len(data)
    assert b"".join(await read_all(storage, "big.bin", chunk_size=MiB)) == data
    stat = await storage.stat("big.bin")
    assert stat is not None
    assert (stat.size, stat.content_type, stat.etag) == (len(data), "application/x-big", stored.etag)


async def test_put_bytes_and_stat(storage: ObjectStorage) -> None:
    before = datetime.now(UTC) - timedelta(minutes=1)
    stored = await storage.put("docs/readme.txt", b"hello quark", content_type="text/plain")
    stat = await storage.stat("docs/readme.txt")
    assert stat is not None
    assert stat.key == "docs/readme.txt"
    assert stat.size == 11
    assert stat.content_type == "text/plain"
    assert stat.etag == md5(b"hello quark") == stored.etag
    assert stat.last_modified.tzinfo is not None
    assert before <= stat.last_modified <= datetime.now(UTC) + timedelta(minutes=1)
    assert await storage.stat("docs/missing.txt") is None
    assert await storage.stat("docs") is None  # a prefix is not an object


async def test_overwrite_replaces_content_and_type(storage: ObjectStorage) -> None:
    await storage.put("k", b"first", content_type="text/plain")
    await storage.put("k", stream(b"second version"), content_type="application/json")
    stat = await storage.stat("k")
    assert stat is not None
    assert (stat.size, stat.content_type, stat.etag) == (14, "application/json", md5(b"second version"))
    assert b"".join(await read_all(storage, "k")) == b"second version"


async def test_declared_length_is_checked(storage: ObjectStorage) -> None:
    stored = await storage.put("ok", stream(b"x" * 100), content_type="text/plain", length=100)
    assert stored.size == 100
    with pytest.raises(InvalidInput):
        await storage.put("short", stream(b"x" * 99), content_type="text/plain", length=100)
    with pytest.raises(InvalidInput):
        await storage.put("long", stream(b"x" * 101), content_type="text/plain", length=100)
    with pytest.raises(InvalidInput):
        await storage.put("bytes", b"x" * 5, content_type="text/plain", length=4)
    assert [o.key for o in await storage.list()] == ["ok"]


# --------------------------------------------------------------------------- open / delete / list


async def test_open_missing_raises_not_found(storage: ObjectStorage) -> None:
    with pytest.raises(NotFound):
        await storage.open("nope/never-written.bin")
    await storage.put("a/b", b"x", content_type="text/plain")
    with pytest.raises(NotFound):
        await storage.open("a")  # a "directory" of other objects is not an object


async def test_delete_is_idempotent(storage: ObjectStorage) -> None:
    await storage.put("gone/soon.txt", b"bye", content_type="text/plain")
    await storage.put("gone/stays.txt", b"hi", content_type="text/plain")
    await storage.delete("gone/soon.txt")
    assert await storage.stat("gone/soon.txt") is None
    await storage.delete("gone/soon.txt")
    await storage.delete("never/existed")
    assert [o.key for o in await storage.list()] == ["gone/stays.txt"]


async def test_delete_then_reuse_prefix_as_key(storage: ObjectStorage) -> None:
    """Once ``a/b`` is gone, ``a`` is free to be an object (the local driver prunes empty directories)."""
    await storage.put("a/b", b"1", content_type="text/plain")
    await storage.delete("a/b")
    await storage.put("a", b"2", content_type="text/plain")
    assert b"".join(await read_all(storage, "a")) == b"2"


async def test_delete_prefix(storage: ObjectStorage) -> None:
    for key in ["media/1/a", "media/1/b", "media/12/c", "media/2/a", "other"]:
        await storage.put(key, key.encode(), content_type="text/plain")
    assert await storage.delete_prefix("media/1/") == 2
    assert [o.key for o in await storage.list()] == ["media/12/c", "media/2/a", "other"]
    assert await storage.delete_prefix("media/1") == 1  # a prefix is a string prefix, as in S3
    assert await storage.delete_prefix("media/1") == 0
    assert await storage.delete_prefix("nothing/here/") == 0
    assert [o.key for o in await storage.list()] == ["media/2/a", "other"]
    assert await storage.delete_prefix("") == 2
    assert await storage.list() == []


async def test_list(storage: ObjectStorage) -> None:
    assert await storage.list() == []
    await storage.put("b/2", b"22", content_type="image/png")
    await storage.put("a/10", b"1010", content_type="text/plain")
    await storage.put("a/1", b"1", content_type="application/json")
    await storage.put("c", b"", content_type="text/csv")
    everything = await storage.list()
    assert [o.key for o in everything] == ["a/1", "a/10", "b/2", "c"]
    by_key = {o.key: o for o in everything}
    assert (by_key["b/2"].size, by_key["b/2"].content_type, by_key["b/2"].etag) == (2, "image/png", md5(b"22"))
    assert by_key["a/1"].content_type == "application/json"
    assert all(isinstance(o, StoredObject) for o in everything)
    assert [o.key for o in await storage.list("a/")] == ["a/1", "a/10"]
    assert [o.key for o in await storage.list("a/1")] == ["a/1", "a/10"]
    assert [o.key for o in await storage.list("b")] == ["b/2"]
    assert await storage.list("zzz/") == []


# --------------------------------------------------------------------------- limits


async def test_max_size_exceeded_by_stream_stores_nothing(storage: ObjectStorage) -> None:
    with pytest.raises(PayloadTooLarge) as info:
        await storage.put("up/too-big.bin", stream(os.urandom(100_001), 10_000), content_type="x/y", max_size=100_000)
    assert info.value.status == 413
    await assert_nothing_stored(storage, "up/too-big.bin")


async def test_max_size_exactly_reached_is_allowed(storage: ObjectStorage) -> None:
    stored = await storage.put("fits", stream(b"z" * 1000, 100), content_type="x/y", max_size=1000)
    assert stored.size == 1000


async def test_max_size_exceeded_by_bytes_stores_nothing(storage: ObjectStorage) -> None:
    with pytest.raises(PayloadTooLarge):
        await storage.put("b.bin", b"x" * 11, content_type="x/y", max_size=10)
    await assert_nothing_stored(storage, "b.bin")


async def test_declared_length_over_max_size_is_rejected_before_reading(storage: ObjectStorage) -> None:
    consumed = 0

    async def body() -> AsyncIterator[bytes]:
        nonlocal consumed
        consumed += 1
        yield b"x"

    with pytest.raises(PayloadTooLarge):
        await storage.put("declared", body(), content_type="x/y", length=2000, max_size=1000)
    assert consumed == 0
    await assert_nothing_stored(storage, "declared")


async def test_too_large_overwrite_keeps_the_old_object(storage: ObjectStorage) -> None:
    await storage.put("avatar", b"old", content_type="image/png")
    with pytest.raises(PayloadTooLarge):
        await storage.put("avatar", stream(b"n" * 5000, 500), content_type="image/jpeg", max_size=4096)
    stat = await storage.stat("avatar")
    assert stat is not None
    assert (stat.content_type, stat.etag) == ("image/png", md5(b"old"))
    assert b"".join(await read_all(storage, "avatar")) == b"old"


async def test_failing_source_stores_nothing(storage: ObjectStorage) -> None:
    class ClientWentAway(Exception):
        pass

    async def body() -> AsyncIterator[bytes]:
        yield b"a" * 70_000
        yield b"b" * 70_000
        raise ClientWentAway

    with pytest.raises(ClientWentAway):
        await storage.put("half", body(), content_type="x/y")
    await assert_nothing_stored(storage, "half")


async def test_s3_max_size_exceeded_mid_multipart_aborts_upload(s3_endpoint: str) -> None:
    """The limit is hit after a part has been sent: the multipart upload must be aborted, not left dangling."""
    store = new_s3(s3_endpoint)
    await store.ensure_bucket()
    saw_multipart = False

    async def body() -> AsyncIterator[bytes]:
        nonlocal saw_multipart
        block = os.urandom(64 * 1024)
        for i in range(200):  # 12.5 MiB on offer against a 7 MiB limit
            yield block
            if i == 100 and not saw_multipart:
                # 6.3 MiB produced: the driver must have started a multipart upload by now.
                deadline = time.monotonic() + 15
                # Poll with a deadline; each query is a real request to the server, which paces the loop.
                while not (saw_multipart := bool(await asyncio.to_thread(pending, store.bucket))):
                    assert time.monotonic() < deadline, "no multipart upload was started"

    def pending(bucket: str) -> list[dict[str, Any]]:
        return pending_multipart_uploads(s3_endpoint, bucket)

    with pytest.raises(PayloadTooLarge):
        await store.put("video.mp4", body(), content_type="video/mp4", max_size=7 * MiB)
    assert saw_multipart
    assert pending(store.bucket) == []
    await assert_nothing_stored(store, "video.mp4")


# --------------------------------------------------------------------------- keys

BAD_KEYS = [
    "",
    "/etc/passwd",
    "../escape",
    "a/../../escape",
    "..",
    "./a",
    "a\\b",
    "a//b",
    "a/",
    "a\x00b",
    "a\nb",
    "x" * 1025,
]


@pytest.mark.parametrize("key", BAD_KEYS, ids=repr)
async def test_bad_keys_are_rejected(storage: ObjectStorage, key: str, tmp_path: Path) -> None:
    with pytest.raises(InvalidInput):
        await storage.put(key, b"x", content_type="text/plain")
    with pytest.raises(InvalidInput):
        await storage.put(key, stream(b"x"), content_type="text/plain")
    with pytest.raises(InvalidInput):
        await storage.open(key)
    with pytest.raises(InvalidInput):
        await storage.stat(key)
    with pytest.raises(InvalidInput):
        await storage.delete(key)
    with pytest.raises(InvalidInput):
        await storage.presigned_url(key, timedelta(minutes=5))
    assert await storage.list() == []
    assert not (tmp_path / "escape").exists()


@pytest.mark.parametrize("prefix", ["/abs", "../", "a//", "a\\", "a/../"])
async def test_bad_prefixes_are_rejected(storage: ObjectStorage, prefix: str) -> None:
    with pytest.raises(InvalidInput):
        await storage.list(prefix)
    with pytest.raises(InvalidInput):
        await storage.delete_prefix(prefix)


# --------------------------------------------------------------------------- presigned URLs


async def test_presigned_url_downloads_the_object(s3_endpoint: str) -> None:
    store = new_s3(s3_endpoint)
    await store.ensure_bucket()
    data = os.urandom(200_000)
    await store.put("shared/photo one.jpg", stream(data), content_type="image/jpeg")
    url = await store.presigned_url("shared/photo one.jpg", timedelta(minutes=5))
    assert url is not None
    assert url.startswith(f"http://{s3_endpoint}/{store.bucket}/")
    assert "X-Amz-Signature=" in url
    async with httpx.AsyncClient() as client:
        resp = await client.get(url)
    assert resp.status_code == 200
    assert resp.content == data
    assert resp.headers["content-type"] == "image/jpeg"
    with pytest.raises(ValueError):
        await store.presigned_url("shared/photo one.jpg", timedelta(days=8))


async def test_local_driver_has_no_presigned_urls(tmp_path: Path) -> None:
    store = LocalStorage(tmp_path)
    await store.put("a", b"x", content_type="text/plain")
    assert await store.presigned_url("a", timedelta(minutes=5)) is None


# --------------------------------------------------------------------------- local driver specifics


async def test_local_metadata_survives_a_new_instance(tmp_path: Path) -> None:
    await LocalStorage(tmp_path).put("x/y.json", b"{}", content_type="application/json")
    stat = await LocalStorage(tmp_path).stat("x/y.json")
    assert stat is not None
    assert (stat.content_type, stat.etag) == ("application/json", md5(b"{}"))


async def test_local_stale_sidecar_is_not_trusted(tmp_path: Path) -> None:
    store = LocalStorage(tmp_path)
    await store.put("doc", b"original", content_type="text/plain")
    (tmp_path / "objects" / "doc").write_bytes(b"changed behind our back")
    stat = await store.stat("doc")
    assert stat is not None
    assert stat.etag == md5(b"changed behind our back")


async def test_local_key_clashing_with_prefix_is_a_conflict(tmp_path: Path) -> None:
    store = LocalStorage(tmp_path)
    await store.put("a", b"file", content_type="text/plain")
    with pytest.raises(Conflict):
        await store.put("a/b", b"nested", content_type="text/plain")
    await store.put("c/d", b"nested", content_type="text/plain")
    with pytest.raises(Conflict):
        await store.put("c", stream(b"file"), content_type="text/plain")
    assert [o.key for o in await store.list()] == ["a", "c/d"]
    assert list((tmp_path / "tmp").iterdir()) == []


async def test_local_upload_streams_without_buffering(tmp_path: Path) -> None:
    """32 MiB through put() and open() with well under 4 MiB of peak Python allocations."""
    store = LocalStorage(tmp_path)
    await store.ensure_bucket()
    block = os.urandom(64 * 1024)
    total = 32 * MiB

    async def body() -> AsyncIterator[bytes]:
        for _ in range(total // len(block)):
            yield block

    tracemalloc.start()
    try:
        stored = await store.put("huge", body(), content_type="x/y")
        received = 0
        async for chunk in await store.open("huge"):
            received += len(chunk)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert stored.size == received == total
    assert peak < 4 * MiB, f"peak {peak} bytes"


# --------------------------------------------------------------------------- configuration


def test_storage_from_file_url(tmp_path: Path) -> None:
    store = storage_from_url(f"file://{tmp_path}/media")
    assert isinstance(store, LocalStorage)
    assert store.root == tmp_path / "media"


def test_storage_from_s3_url_parses_every_part() -> None:
    store = storage_from_url("s3://AKID:se%2Fcret@minio.internal:9000/media?secure=true&region=eu-west-1")
    assert isinstance(store, S3Storage)
    assert (store.endpoint, store.bucket, store.secure, store.region) == (
        "minio.internal:9000",
        "media",
        True,
        "eu-west-1",
    )
    plain = storage_from_url("s3://a:b@localhost/bucket")
    assert isinstance(plain, S3Storage)
    assert (plain.endpoint, plain.secure, plain.region) == ("localhost", False, None)


async def test_storage_from_s3_url_talks_to_the_server(s3_endpoint: str) -> None:
    bucket = f"quark-{uuid.uuid4().hex[:16]}"
    store = storage_from_url(f"s3://{ACCESS}:{SECRET}@{s3_endpoint}/{bucket}?secure=false&region={REGION}")
    await store.ensure_bucket()
    await store.ensure_bucket()  # idempotent
    await store.put("k", b"v", content_type="text/plain")
    assert [o.key for o in await store.list()] == ["k"]
    assert [o.key for o in await new_s3(s3_endpoint, bucket).list()] == ["k"]


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://example.com/bucket", "unsupported storage URL"),
        ("media", "unsupported storage URL"),
        ("file://relative/path", "absolute path"),
        ("file:relative", "absolute path"),
        ("s3://minio:9000/bucket", "credentials missing"),
        ("s3://a:b@minio:9000", "one bucket name"),
        ("s3://a:b@minio:9000/bucket/extra", "one bucket name"),
        ("s3://a:b@minio:9000/bucket?secure=maybe", "secure must be true or false"),
        ("s3://a:b@minio:9000/bucket?regoin=x", "unknown parameter"),
        ("s3://a:b@minio:notaport/bucket", "invalid storage URL"),
    ],
)
def test_storage_from_bad_url(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as info:
        storage_from_url(url)
    assert ":b@" not in str(info.value)  # the secret key never reaches an error message


def test_protocol_is_satisfied(tmp_path: Path, s3_endpoint: str) -> None:
    """Both drivers are usable wherever an ObjectStorage is expected (mypy checks the same statically)."""
    stores: list[Callable[[], ObjectStorage]] = [lambda: LocalStorage(tmp_path), lambda: new_s3(s3_endpoint)]
    for make in stores:
        store = make()
        for name in ("ensure_bucket", "put", "open", "stat", "delete", "delete_prefix", "list", "presigned_url"):
            assert asyncio.iscoroutinefunction(getattr(store, name)), name
