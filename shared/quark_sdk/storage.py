"""Object storage for services that keep blobs (the media service): one interface, two drivers.

:class:`LocalStorage` keeps objects on disk (development, single-node installs);
:class:`S3Storage` talks to any S3-compatible server (MinIO, AWS S3, Ceph). Both
stream: an upload given as an async iterable is never held whole in memory, and an
upload that exceeds ``max_size`` (or fails half-way) leaves nothing behind, so a
service can enforce quotas without cleaning up after itself.

Keys are validated identically by both drivers (see :func:`validate_key`) so a key
that works in development cannot escape the storage root or mean something else
in production. Pick a driver from configuration with :func:`storage_from_url`.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import hashlib
import io
import json
import logging
import os
import queue
import stat as stat_mode
import tempfile
import threading
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any, Protocol, TypeVar
from urllib.parse import parse_qs, unquote, urlsplit

from minio import Minio
from minio.deleteobjects import DeleteObject
from minio.error import S3Error
from urllib3 import BaseHTTPResponse

from quark_sdk.errors import Conflict, InvalidInput, NotFound, PayloadTooLarge

log = logging.getLogger("quark.storage")

T = TypeVar("T")

DEFAULT_CONTENT_TYPE = "application/octet-stream"
MAX_KEY_BYTES = 1024  # S3's limit; enforced for both drivers so keys stay portable
MIN_PART_SIZE = 5 * 1024 * 1024  # S3's minimum multipart part size
_MISSING_CODES = frozenset({"NoSuchKey", "NotFound", "ResourceNotFound"})
_BYTES_TYPES = (bytes, bytearray, memoryview)


@dataclass(frozen=True)
class StoredObject:
    """What a driver knows about one stored object; ``etag`` is the MD5 hex digest for single-part uploads."""

    key: str
    size: int
    content_type: str
    etag: str
    last_modified: datetime


class ObjectStorage(Protocol):
    """The storage contract services code against; every method is async."""

    async def ensure_bucket(self) -> None:
        """Create the bucket (or directory tree) if it does not exist yet."""
        ...

    async def put(
        self,
        key: str,
        data: bytes | AsyncIterable[bytes],
        *,
        content_type: str,
        length: int | None = None,
        max_size: int | None = None,
    ) -> StoredObject:
        """Store an object; raises PayloadTooLarge (storing nothing) once more than ``max_size`` bytes arrive."""
        ...

    async def open(self, key: str, *, chunk_size: int = 65536) -> AsyncIterator[bytes]:
        """Return an async iterator over the object's bytes; raises NotFound before any byte is read."""
        ...

    async def stat(self, key: str) -> StoredObject | None:
        """Describe an object, or None if there is none."""
        ...

    async def delete(self, key: str) -> None:
        """Remove an object; removing a missing object is not an error."""
        ...

    async def delete_prefix(self, prefix: str) -> int:
        """Remove every object whose key starts with ``prefix``; returns how many were removed."""
        ...

    async def list(self, prefix: str = "") -> builtins.list[StoredObject]:
        """Every object whose key starts with ``prefix``, sorted by key."""
        ...

    async def presigned_url(self, key: str, expires: timedelta) -> str | None:
        """A time-limited download URL, or None when the caller must stream the object itself."""
        ...


# --------------------------------------------------------------------------- keys


def _key_problem(key: str) -> str | None:
    if not key:
        return "must not be empty"
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in key):
        return "must not contain NUL or other control characters"
    if "\\" in key:
        return "must not contain backslashes"
    if key.startswith("/"):
        return "must be relative (no leading '/')"
    if len(key.encode("utf-8")) > MAX_KEY_BYTES:
        return f"must be at most {MAX_KEY_BYTES} bytes"
    for segment in key.split("/"):
        if not segment:
            return "must not contain empty segments ('//' or a trailing '/')"
        if segment in (".", ".."):
            return "must not contain '.' or '..' segments"
    return None


def validate_key(key: str) -> str:
    """Return ``key`` or raise InvalidInput: keys must never escape the storage root on any driver."""
    problem = _key_problem(key) if isinstance(key, str) else "must be a string"
    if problem:
        raise InvalidInput(f"invalid object key {str(key)[:80]!r}: {problem}", field="key")
    return key


def validate_prefix(prefix: str) -> str:
    """Return ``prefix`` or raise InvalidInput; like a key, but it may be empty or end with '/'."""
    if prefix == "":
        return prefix
    body = prefix[:-1] if prefix.endswith("/") else prefix
    problem = _key_problem(body) if isinstance(prefix, str) else "must be a string"
    if problem:
        raise InvalidInput(f"invalid object prefix {str(prefix)[:80]!r}: {problem}", field="prefix")
    return prefix


def _check_declared(length: int | None, max_size: int | None) -> None:
    """Reject a declared length up front, before any byte is read."""
    if length is not None and length < 0:
        raise InvalidInput("length must not be negative", field="length")
    if max_size is not None and max_size < 0:
        raise ValueError("max_size must not be negative")
    if max_size is not None and length is not None and length > max_size:
        raise _too_large(max_size)


def _check_running(size: int, length: int | None, max_size: int | None) -> None:
    """Called after every chunk: fail as soon as the stream is provably too long."""
    if max_size is not None and size > max_size:
        raise _too_large(max_size)
    if length is not None and size > length:
        raise InvalidInput(f"received more than the declared {length} bytes", field="length")


def _check_final(size: int, length: int | None) -> None:
    if length is not None and size != length:
        raise InvalidInput(f"declared {length} bytes but received {size}", field="length")


def _too_large(max_size: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"object exceeds the {max_size}-byte limit", extra={"max_size": max_size})


# --------------------------------------------------------------------------- local driver


class _LocalWriter:
    """Blocking half of a local upload: a temp file beside the objects plus a running MD5."""

    def __init__(self, tmp_dir: Path) -> None:
        fd, name = tempfile.mkstemp(dir=tmp_dir, prefix="put-", suffix=".part")
        self.path = Path(name)
        self._fh: IO[bytes] = os.fdopen(fd, "wb")
        self._md5 = hashlib.md5(usedforsecurity=False)

    def write(self, chunk: bytes | bytearray | memoryview) -> None:
        self._fh.write(chunk)
        self._md5.update(chunk)

    def finish(self) -> tuple[str, os.stat_result]:
        """Flush to disk so the rename that follows publishes complete data."""
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self._fh.close()
        return self._md5.hexdigest(), self.path.stat()

    def abort(self) -> None:
        with contextlib.suppress(OSError):
            self._fh.close()
        with contextlib.suppress(OSError):
            self.path.unlink()


class LocalStorage:
    """Objects as files under ``root/objects``, with content type and etag in ``root/meta`` sidecars.

    Uploads are written to ``root/tmp`` and moved into place with ``os.replace``, so a
    reader sees the old object or the new one, never a torn file. The sidecar records
    the data file's size, mtime and inode; if it does not match (a crash between the
    two renames, or two writers racing) the etag is recomputed rather than trusted.
    A key cannot be both an object and a "directory" of other objects here
    (``a`` and ``a/b``); the second put raises Conflict.
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._objects = self.root / "objects"
        self._meta = self.root / "meta"
        self._tmp = self.root / "tmp"

    def __repr__(self) -> str:
        return f"LocalStorage({str(self.root)!r})"

    # -- paths

    def _segments(self, key: str) -> builtins.list[str]:
        segments = validate_key(key).split("/")
        if any(len(s.encode("utf-8")) > 255 for s in segments):
            raise InvalidInput(f"invalid object key {key[:80]!r}: segments must be at most 255 bytes", field="key")
        return segments

    def _data_path(self, key: str) -> Path:
        return self._objects.joinpath(*self._segments(key))

    def _meta_path(self, key: str) -> Path:
        # Mirrors the data tree exactly, so the two trees can only conflict where the data already would.
        return self._meta.joinpath(*self._segments(key))

    def _ensure_dirs(self) -> None:
        for d in (self._objects, self._meta, self._tmp):
            d.mkdir(parents=True, exist_ok=True)

    # -- API

    async def ensure_bucket(self) -> None:
        await asyncio.to_thread(self._ensure_dirs)

    async def put(
        self,
        key: str,
        data: bytes | AsyncIterable[bytes],
        *,
        content_type: str,
        length: int | None = None,
        max_size: int | None = None,
    ) -> StoredObject:
        self._segments(key)
        _check_declared(length, max_size)
        content_type = content_type or DEFAULT_CONTENT_TYPE
        await asyncio.to_thread(self._ensure_dirs)
        writer = await asyncio.to_thread(_LocalWriter, self._tmp)
        try:
            if isinstance(data, _BYTES_TYPES):
                _check_running(len(data), length, max_size)
                _check_final(len(data), length)
                await asyncio.to_thread(writer.write, data)
            else:
                size = 0
                async for chunk in data:
                    size += len(chunk)
                    _check_running(size, length, max_size)
                    if chunk:
                        await asyncio.to_thread(writer.write, chunk)
                _check_final(size, length)
            etag, st = await asyncio.to_thread(writer.finish)
            return await asyncio.to_thread(self._commit, key, writer.path, content_type, etag, st)
        except BaseException:
            # Runs inline even when cancelled: the temp file must not outlive a failed put.
            writer.abort()
            raise

    def _commit(self, key: str, tmp: Path, content_type: str, etag: str, st: os.stat_result) -> StoredObject:
        dest = self._data_path(key)
        for attempt in range(3):
            try:
                dest.parent.mkdir(parents=True, exist_ok=True)
                os.replace(tmp, dest)
                break
            except FileNotFoundError:
                # A concurrent delete pruned the now-empty parent directory between mkdir and replace.
                if attempt == 2:
                    raise
            except (FileExistsError, NotADirectoryError, IsADirectoryError) as exc:
                raise Conflict(f"object key {key!r} clashes with an existing object or prefix") from exc
        record = {
            "content_type": content_type,
            "etag": etag,
            "size": st.st_size,
            "mtime_ns": st.st_mtime_ns,
            "ino": st.st_ino,
        }
        try:
            self._write_meta(key, record)
        except OSError:
            # The data is in place; stat() falls back to recomputing the etag.
            log.warning("could not write metadata sidecar for %r", key, exc_info=True)
        return StoredObject(key, st.st_size, content_type, etag, datetime.fromtimestamp(st.st_mtime, UTC))

    def _write_meta(self, key: str, record: dict[str, Any]) -> None:
        path = self._meta_path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=self._tmp, prefix="meta-", suffix=".part")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(record, fh)
            os.replace(name, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(name)
            raise

    def _read_meta(self, key: str) -> dict[str, Any] | None:
        try:
            with self._meta_path(key).open("r", encoding="utf-8") as fh:
                record = json.load(fh)
        except (OSError, ValueError):
            return None
        return record if isinstance(record, dict) else None

    async def open(self, key: str, *, chunk_size: int = 65536) -> AsyncIterator[bytes]:
        if chunk_size <= 0:
            raise ValueError("chunk_size must be positive")
        path = self._data_path(key)
        try:
            fh = await asyncio.to_thread(path.open, "rb")
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError) as exc:
            raise NotFound(f"object {key!r} not found") from exc
        return _iter_file(fh, chunk_size)

    async def stat(self, key: str) -> StoredObject | None:
        self._segments(key)
        return await asyncio.to_thread(self._stat, key)

    def _stat(self, key: str) -> StoredObject | None:
        path = self._data_path(key)
        try:
            st = path.stat()
        except (FileNotFoundError, NotADirectoryError):
            return None
        if not stat_mode.S_ISREG(st.st_mode):
            return None
        meta = self._read_meta(key)
        current = meta is not None and (meta.get("size"), meta.get("mtime_ns"), meta.get("ino")) == (
            st.st_size,
            st.st_mtime_ns,
            st.st_ino,
        )
        if meta is not None and current:
            content_type, etag = str(meta.get("content_type") or DEFAULT_CONTENT_TYPE), str(meta.get("etag"))
        else:
            content_type, etag = DEFAULT_CONTENT_TYPE, _md5_file(path)
        return StoredObject(key, st.st_size, content_type, etag, datetime.fromtimestamp(st.st_mtime, UTC))

    async def delete(self, key: str) -> None:
        self._segments(key)
        await asyncio.to_thread(self._delete, key)

    def _delete(self, key: str) -> None:
        for base, path in ((self._objects, self._data_path(key)), (self._meta, self._meta_path(key))):
            with contextlib.suppress(FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError):
                if not path.is_dir():
                    path.unlink()
            _prune_empty_dirs(path.parent, base)

    async def delete_prefix(self, prefix: str) -> int:
        validate_prefix(prefix)
        return await asyncio.to_thread(self._delete_prefix, prefix)

    def _delete_prefix(self, prefix: str) -> int:
        removed = 0
        for key in builtins.list(self._keys(prefix)):
            if self._data_path(key).is_file():
                self._delete(key)
                removed += 1
        return removed

    async def list(self, prefix: str = "") -> builtins.list[StoredObject]:
        validate_prefix(prefix)
        return await asyncio.to_thread(self._list, prefix)

    def _list(self, prefix: str) -> builtins.list[StoredObject]:
        found = (self._stat(key) for key in self._keys(prefix))
        return sorted((obj for obj in found if obj is not None), key=lambda obj: obj.key)

    def _keys(self, prefix: str) -> Iterator[str]:
        """Keys under ``prefix``, walking only the directories that can hold matches."""
        head = prefix.rpartition("/")[0]
        start = self._objects.joinpath(*head.split("/")) if head else self._objects
        for dirpath, dirnames, filenames in os.walk(start):
            rel = Path(dirpath).relative_to(self._objects).parts
            for name in filenames:
                key = "/".join((*rel, name))
                if key.startswith(prefix) and _key_problem(key) is None:
                    yield key
            dirnames[:] = [
                d for d in dirnames if (sub := "/".join((*rel, d)) + "/").startswith(prefix) or prefix.startswith(sub)
            ]

    async def presigned_url(self, key: str, expires: timedelta) -> str | None:
        self._segments(key)
        return None


async def _iter_file(fh: IO[bytes], chunk_size: int) -> AsyncIterator[bytes]:
    try:
        while chunk := await asyncio.to_thread(fh.read, chunk_size):
            yield chunk
    finally:
        fh.close()


def _md5_file(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _prune_empty_dirs(directory: Path, stop: Path) -> None:
    """Remove now-empty parents so a later put of a key equal to the old prefix does not clash."""
    while directory != stop and stop in directory.parents:
        try:
            directory.rmdir()
        except OSError:
            return
        directory = directory.parent


# --------------------------------------------------------------------------- S3 driver


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

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})
_URL_HELP = "use file:///absolute/path or s3://ACCESS:SECRET@host:port/bucket?secure=false&region=..."


def _redact(url: str) -> str:
    """The URL without its secret key, safe for error messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username}:***@{parts.netloc.rpartition('@')[2]}"
    return parts._replace(netloc=netloc).geturl()


def storage_from_url(url: str) -> ObjectStorage:
    """Build a driver from one configuration string, failing with a message that says what is wrong."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"invalid storage URL {_redact(url)!r}: {exc}; {_URL_HELP}") from None
    scheme = parts.scheme.lower()
    if scheme == "file":
        path = unquote(parts.path)
        if parts.netloc not in ("", "localhost") or not path.startswith("/"):
            raise ValueError(
                f"invalid storage URL {url!r}: a file URL needs an absolute path, e.g. file:///var/lib/quark"
            )
        if parts.query or parts.fragment:
            raise ValueError(f"invalid storage URL {url!r}: file URLs take no query or fragment")
        return LocalStorage(Path(path))
    if scheme == "s3":
        shown = _redact(url)
        if not parts.username or parts.password is None:
            raise ValueError(f"invalid storage URL {shown!r}: credentials missing; {_URL_HELP}")
        if not parts.hostname:
            raise ValueError(f"invalid storage URL {shown!r}: host missing; {_URL_HELP}")
        bucket = parts.path.strip("/")
        if not bucket or "/" in bucket:
            raise ValueError(f"invalid storage URL {shown!r}: the path must be exactly one bucket name; {_URL_HELP}")
        params = parse_qs(parts.query, keep_blank_values=True)
        unknown = sorted(set(params) - {"secure", "region"})
        if unknown:
            raise ValueError(f"invalid storage URL {shown!r}: unknown parameter(s) {', '.join(unknown)}")
        secure_text = params.get("secure", ["false"])[-1].lower()
        if secure_text not in _TRUE | _FALSE:
            raise ValueError(f"invalid storage URL {shown!r}: secure must be true or false, not {secure_text!r}")
        region = params.get("region", [""])[-1] or None
        host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
        endpoint = host if port is None else f"{host}:{port}"
        return S3Storage(
            endpoint,
            unquote(parts.username),
            unquote(parts.password),
            bucket,
            secure=secure_text in _TRUE,
            region=region,
        )
    raise ValueError(f"unsupported storage URL {_redact(url)!r}: {_URL_HELP}")
