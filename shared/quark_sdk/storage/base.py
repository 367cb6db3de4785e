"""What both drivers share: the interface, stored-object metadata, key validation and size checks."""

from __future__ import annotations

import builtins
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol, TypeVar

from quark_sdk.errors import InvalidInput, PayloadTooLarge

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
