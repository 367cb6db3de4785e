"""Keyset (cursor) pagination, one way for every module: `?limit=&cursor=` → `{"items": [...], "next_cursor": ...}`.

A cursor is opaque to clients: the sort key of the last item of a page, typed and versioned,
base64url-encoded JSON. Decoding checks the version, the number and the type of every part
against the shape the caller expects, and bounds each one, so a forged or stale cursor is a
422 (`cursor is not valid`) and never reaches SQL as something it is not.

Routes take `limit: Limit = 20, cursor: Cursor = None`; service functions fetch `limit + 1`
rows and call `page_of(rows, limit, key)`; responses are `Page[ItemOut]` (or a named subclass
when the OpenAPI name matters).
"""

from __future__ import annotations

import base64
import binascii
import math
import re
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Annotated, Any, Generic, TypeVar

import orjson
from fastapi import Query
from pydantic import BaseModel

from quark_sdk.errors import InvalidInput

CURSOR_VERSION = 1
MAX_LIMIT = 100
MAX_CURSOR_LENGTH = 4000
MAX_CURSOR_INT = 2**53  # exact in a double; as µs since the epoch: years 1685 to 2255
INVALID_CURSOR = "cursor is not valid"

# One bound and one error text for every list endpoint of the station.
Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT, description=f"page size, 1 to {MAX_LIMIT}")]
Cursor = Annotated[str | None, Query(max_length=MAX_CURSOR_LENGTH,
                                     description="`next_cursor` of the previous page; omit for the first page")]

CursorPart = int | float | str | uuid.UUID | datetime
T = TypeVar("T")
Item = TypeVar("Item")

_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


class Page(BaseModel, Generic[T]):
    """One page of a list: its items and the cursor of the next page (None on the last one)."""

    items: list[T]
    next_cursor: str | None = None


def encode_cursor(*parts: CursorPart) -> str:
    """The opaque cursor for a sort key (datetimes keep their instant, to the microsecond)."""
    encoded: list[Any] = [CURSOR_VERSION]
    for part in parts:
        if isinstance(part, uuid.UUID):
            encoded.append(str(part))
        elif isinstance(part, datetime):
            if part.tzinfo is None:
                raise ValueError("cursor datetimes must be timezone-aware")
            encoded.append(part.astimezone(UTC).isoformat())
        else:
            encoded.append(part)
    return base64.urlsafe_b64encode(orjson.dumps(encoded)).decode().rstrip("=")


def decode_cursor(cursor: str, shape: Sequence[type]) -> list[Any]:
    """The parts of a cursor made by `encode_cursor` whose parts have the given types; 422 otherwise."""
    try:
        if len(cursor) > MAX_CURSOR_LENGTH:
            raise ValueError("length")
        padded = cursor + "=" * (-len(cursor) % 4)
        raw = orjson.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
        if not isinstance(raw, list) or not raw or raw[0] != CURSOR_VERSION or len(raw) != len(shape) + 1:
            raise ValueError("shape")
        return [_part(value, kind) for value, kind in zip(raw[1:], shape, strict=True)]
    except (ValueError, TypeError, UnicodeError, binascii.Error, orjson.JSONDecodeError) as exc:
        raise InvalidInput(INVALID_CURSOR, field="cursor") from exc


def _part(value: Any, kind: type) -> CursorPart:
    if kind is uuid.UUID:
        if not isinstance(value, str):
            raise ValueError("uuid")
        return uuid.UUID(value)
    if kind is int:
        # Bounded so that every use (a bigint, a time in µs, a Redis score) stays exact and in range.
        if not isinstance(value, int) or isinstance(value, bool) or abs(value) > MAX_CURSOR_INT:
            raise ValueError("int")
        return value
    if kind is float:
        if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
            raise ValueError("float")
        return float(value)
    if kind is str:
        if not isinstance(value, str) or len(value) > MAX_CURSOR_LENGTH or _UNSTORABLE.search(value):
            raise ValueError("str")
        return value
    if kind is datetime:
        if not isinstance(value, str):
            raise ValueError("datetime")
        parsed = datetime.fromisoformat(value)
        if parsed.tzinfo is None:
            raise ValueError("naive datetime")
        return parsed
    raise ValueError(f"unsupported cursor part type {kind!r}")


def page_of(rows: Sequence[Item], limit: int, key: Callable[[Item], str]) -> tuple[list[Item], str | None]:
    """Given up to `limit + 1` rows in order, the page and the cursor of its last row when more follow."""
    if len(rows) > limit:
        page = list(rows[:limit])
        return page, key(page[-1])
    return list(rows), None
