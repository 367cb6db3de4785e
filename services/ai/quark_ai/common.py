"""Keyset cursors and small input helpers shared by the service modules."""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from quark_sdk.errors import InvalidInput

MAX_CURSOR_INT = 2**62


def encode_cursor(*parts: Any) -> str:
    raw = json.dumps([str(p) if isinstance(p, uuid.UUID) else p for p in parts], separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str, shape: tuple[type, ...]) -> list[Any]:
    """Parse a cursor made by `encode_cursor` whose parts have the given types (int or UUID); 422 otherwise."""
    try:
        parts = json.loads(base64.urlsafe_b64decode((cursor + "=" * (-len(cursor) % 4)).encode()).decode())
        if not isinstance(parts, list) or len(parts) != len(shape):
            raise ValueError("shape")
        out: list[Any] = []
        for value, kind in zip(parts, shape, strict=True):
            if kind is uuid.UUID:
                if not isinstance(value, str):
                    raise ValueError("uuid")
                out.append(uuid.UUID(value))
            elif kind is int:
                if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_CURSOR_INT:
                    raise ValueError("int")
                out.append(value)
            else:
                raise ValueError("kind")
        return out
    except (ValueError, TypeError, UnicodeDecodeError, binascii.Error, RecursionError) as exc:
        raise InvalidInput("cursor is not valid", field="cursor") from exc


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def micros(at: datetime) -> int:
    """Exact (integer) microseconds since the epoch: a float timestamp would round."""
    return (at - EPOCH) // timedelta(microseconds=1)


def from_micros(value: int) -> datetime:
    return EPOCH + timedelta(microseconds=value)


def parse_uuid(value: str) -> uuid.UUID | None:
    """A path id that is not a UUID names nothing: callers answer 404, as for an unknown id."""
    try:
        return uuid.UUID(value)
    except ValueError:
        return None
