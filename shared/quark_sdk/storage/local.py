"""The local-disk driver (development, single-node installs)."""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import hashlib
import json
import logging
import os
import stat as stat_mode
import tempfile
from collections.abc import AsyncIterable, AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any

from quark_sdk.errors import Conflict, InvalidInput, NotFound
from quark_sdk.storage.base import (
    _BYTES_TYPES,
    DEFAULT_CONTENT_TYPE,
    StoredObject,
    _check_declared,
    _check_final,
    _check_running,
    _key_problem,
    validate_key,
    validate_prefix,
)

log = logging.getLogger("quark.storage")


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
