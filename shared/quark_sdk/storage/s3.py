"""The S3 driver (MinIO, AWS S3, Ceph), through the `minio` client run in threads."""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import io
import queue
import threading
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from minio import Minio
from minio.deleteobjects import DeleteObject
from minio.error import S3Error
from urllib3 import BaseHTTPResponse

from quark_sdk.errors import NotFound
from quark_sdk.storage.base import (
    _BYTES_TYPES,
    _MISSING_CODES,
    DEFAULT_CONTENT_TYPE,
    MIN_PART_SIZE,
    StoredObject,
    T,
    _check_declared,
    _check_final,
    _check_running,
    validate_key,
    validate_prefix,
)


class _UploadAborted(Exception):
    """Handed to minio's reader so it abandons (and aborts) a multipart upload."""


class _Pipe:
    """A blocking ``read()`` for minio's upload thread, fed chunk by chunk from the event loop.

    At most ``depth`` chunks wait in the queue: the producer is paused (without blocking
    the loop) until the upload thread catches up, so memory stays bounded by one
    multipart part plus ``depth`` chunks whatever the object's size.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, depth: int = 8) -> None:
        self._loop = loop
        self._slots = asyncio.Semaphore(depth)
        self._queue: queue.SimpleQueue[bytes | BaseException | None] = queue.SimpleQueue()
        self._buffer = b""
        self._offset = 0
        self._eof = False

    # event-loop side

    async def send(self, chunk: bytes, reader: asyncio.Future[Any]) -> None:
        """Queue ``chunk``; returns early (dropping it) if the reader has died, which the caller then awaits."""
        if self._slots.locked():
            acquire = asyncio.ensure_future(self._slots.acquire())
            try:
                await asyncio.wait({acquire, reader}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                if not acquire.done():
                    acquire.cancel()
            if acquire.cancelled() or not acquire.done():
                return
        else:
            await self._slots.acquire()
        self._queue.put(bytes(chunk))

    def finish(self) -> None:
        self._queue.put(None)

    def abort(self) -> None:
        self._queue.put(_UploadAborted("upload abandoned before the end of the stream"))

    # upload-thread side

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            return b"".join(iter(lambda: self.read(1 << 20), b""))
        while self._offset >= len(self._buffer):
            if self._eof:
                return b""
            item = self._queue.get()
            if item is None:
                self._eof = True
                return b""
            if isinstance(item, BaseException):
                raise item
            with contextlib.suppress(RuntimeError):  # loop already closed: nobody is waiting for the slot
                self._loop.call_soon_threadsafe(self._slots.release)
            self._buffer, self._offset = item, 0
        end = self._offset + size
        out = self._buffer[self._offset : end]
        self._offset = min(end, len(self._buffer))
        return out


def _in_thread(fn: Callable[[], T]) -> asyncio.Future[T]:
    """Run a long blocking call on its own thread rather than the shared executor.

    An upload thread waits on its producer; were it in the default executor, enough
    concurrent uploads whose producers themselves need ``to_thread`` (copying one
    object into another) could exhaust the pool and deadlock.
    """
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()
    # Mark the outcome as retrieved: a cancelled put() may never await it.
    future.add_done_callback(lambda f: None if f.cancelled() else f.exception())

    def settle(result: T | None, exc: BaseException | None) -> None:
        if future.done():
            return
        if exc is not None:
            future.set_exception(exc)
        else:
            future.set_result(result)  # type: ignore[arg-type]

    def run() -> None:
        try:
            result = fn()
        except BaseException as exc:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(settle, None, exc)
        else:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(settle, result, None)

    threading.Thread(target=run, name="quark-storage-upload", daemon=True).start()
    return future


class S3Storage:
    """Objects in one bucket of an S3-compatible server, through the blocking ``minio`` client.

    Blocking calls run in threads. A stream of unknown length is uploaded with
    ``put_object(length=-1)`` fed from a bounded :class:`_Pipe`, one part at a time
    (no parallel part uploads, so an abort cannot race a part still in flight); if the
    stream breaks ``max_size`` or fails, minio aborts the multipart upload and the
    bucket holds nothing new. ``list()`` issues one HEAD per object, since S3 listings
    do not carry the content type.
    """

    def __init__(
        self,
        endpoint: str,
        access_key: str,
        secret_key: str,
        bucket: str,
        *,
        secure: bool = False,
        region: str | None = None,
        part_size: int = 16 * 1024 * 1024,
    ) -> None:
        if part_size < MIN_PART_SIZE:
            raise ValueError(f"part_size must be at least {MIN_PART_SIZE} bytes (S3's minimum)")
        self.endpoint = endpoint
        self.bucket = bucket
        self.secure = secure
        self.region = region
        self.part_size = part_size
        self._client = Minio(endpoint, access_key=access_key, secret_key=secret_key, secure=secure, region=region)

    def __repr__(self) -> str:
        scheme = "https" if self.secure else "http"
        return f"S3Storage({scheme}://{self.endpoint}/{self.bucket})"

    async def ensure_bucket(self) -> None:
        await asyncio.to_thread(self._ensure_bucket)

    def _ensure_bucket(self) -> None:
        if self._client.bucket_exists(self.bucket):
            return
        try:
            self._client.make_bucket(self.bucket, location=self.region)
        except S3Error as exc:
            if exc.code != "BucketAlreadyOwnedByYou":  # another replica won the race
                raise

    async def put(
        self,
        key: str,
        data: bytes | AsyncIterable[bytes],
        *,
        content_type: str,
        length: int | None = None,
        max_size: int | None = None,
    ) -> StoredObject:
        validate_key(key)
        _check_declared(length, max_size)
        content_type = content_type or DEFAULT_CONTENT_TYPE
        if isinstance(data, _BYTES_TYPES):
            _check_running(len(data), length, max_size)
            _check_final(len(data), length)
            result = await asyncio.to_thread(
                self._client.put_object, self.bucket, key, io.BytesIO(data), len(data), content_type=content_type
            )
            size = len(data)
        else:
            result, size = await self._put_stream(key, data, content_type, length, max_size)
        stored = await asyncio.to_thread(self._stat, key)
        if stored is None:  # deleted by someone else already; report what we wrote
            stored = StoredObject(key, size, content_type, result.etag or "", datetime.now(UTC))
        return stored

    async def _put_stream(
        self,
        key: str,
        data: AsyncIterable[bytes],
        content_type: str,
        length: int | None,
        max_size: int | None,
    ) -> tuple[Any, int]:
        pipe = _Pipe(asyncio.get_running_loop())
        upload = _in_thread(
            lambda: self._client.put_object(
                self.bucket,
                key,
                pipe,  # type: ignore[arg-type]  # minio only calls read()
                -1,
                content_type=content_type,
                part_size=self.part_size,
                num_parallel_uploads=1,
            )
        )
        size = 0
        try:
            async for chunk in data:
                size += len(chunk)
                _check_running(size, length, max_size)
                if upload.done():
                    break  # the upload failed; awaiting it below raises why
                if chunk:
                    await pipe.send(chunk, upload)
            else:
                _check_final(size, length)
                pipe.finish()
            result = await asyncio.shield(upload)
        except BaseException:
            pipe.abort()
            # Wait for minio to abort the multipart upload, so "raised" really means "stored nothing".
            with contextlib.suppress(Exception):
                await asyncio.shield(upload)
            raise
        return result, size

    async def open(self, key: str, *, chunk_size: int = 65536) -> AsyncIterator[bytes]:
        validate_key(key)
        if chunk_size <= 0:
            raise ValueError("chunk_size must be positive")
        try:
            response = await asyncio.to_thread(self._client.get_object, self.bucket, key)
        except S3Error as exc:
            if exc.code in _MISSING_CODES:
                raise NotFound(f"object {key!r} not found") from exc
            raise
        return _iter_response(response, chunk_size)

    async def stat(self, key: str) -> StoredObject | None:
        validate_key(key)
        return await asyncio.to_thread(self._stat, key)

    def _stat(self, key: str) -> StoredObject | None:
        try:
            info = self._client.stat_object(self.bucket, key)
        except S3Error as exc:
            if exc.code in _MISSING_CODES:
                return None
            raise
        return StoredObject(
            key=key,
            size=info.size or 0,
            content_type=info.content_type or DEFAULT_CONTENT_TYPE,
            etag=info.etag or "",
            last_modified=info.last_modified or datetime.now(UTC),
        )

    async def delete(self, key: str) -> None:
        validate_key(key)
        await asyncio.to_thread(self._client.remove_object, self.bucket, key)

    async def delete_prefix(self, prefix: str) -> int:
        validate_prefix(prefix)
        return await asyncio.to_thread(self._delete_prefix, prefix)

    def _delete_prefix(self, prefix: str) -> int:
        requested = 0

        def targets() -> Iterator[DeleteObject]:
            nonlocal requested
            for key in self._keys(prefix):
                requested += 1
                yield DeleteObject(key)

        errors = builtins.list(self._client.remove_objects(self.bucket, targets()))
        failed = [e for e in errors if e.code not in _MISSING_CODES]
        if failed:
            raise RuntimeError(
                f"could not delete {len(failed)} object(s) under {prefix!r} in bucket {self.bucket!r}: "
                f"{failed[0].code}: {failed[0].message}"
            )
        return requested - len(errors)

    def _keys(self, prefix: str) -> Iterator[str]:
        for obj in self._client.list_objects(self.bucket, prefix=prefix or None, recursive=True):
            if obj.object_name and not obj.is_dir:
                yield obj.object_name

    async def list(self, prefix: str = "") -> builtins.list[StoredObject]:
        validate_prefix(prefix)
        keys = await asyncio.to_thread(lambda: builtins.list(self._keys(prefix)))
        limit = asyncio.Semaphore(8)

        async def head(key: str) -> StoredObject | None:
            async with limit:
                return await asyncio.to_thread(self._stat, key)

        found = await asyncio.gather(*(head(k) for k in keys))
        return sorted((obj for obj in found if obj is not None), key=lambda obj: obj.key)

    async def presigned_url(self, key: str, expires: timedelta) -> str | None:
        validate_key(key)
        if not timedelta(seconds=1) <= expires <= timedelta(days=7):
            raise ValueError("presigned URLs must expire between 1 second and 7 days from now")
        return await asyncio.to_thread(self._client.presigned_get_object, self.bucket, key, expires=expires)


async def _iter_response(response: BaseHTTPResponse, chunk_size: int) -> AsyncIterator[bytes]:
    chunks = response.stream(chunk_size)
    try:
        while (chunk := await asyncio.to_thread(next, chunks, None)) is not None:
            if chunk:
                yield chunk
    finally:
        response.close()
        response.release_conn()


# --------------------------------------------------------------------------- configuration
