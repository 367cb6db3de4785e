"""quark_sdk.pagination: the one cursor codec, its validation, and the page helper."""

from __future__ import annotations

import base64
import uuid
from datetime import UTC, datetime, timedelta, timezone

import orjson
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from quark_sdk.errors import InvalidInput, install_error_handlers
from quark_sdk.pagination import (
    INVALID_CURSOR,
    MAX_CURSOR_INT,
    MAX_LIMIT,
    Cursor,
    Limit,
    Page,
    decode_cursor,
    encode_cursor,
    page_of,
)


def _raw(parts: object) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(parts)).decode().rstrip("=")


def test_round_trip_keeps_every_part_type() -> None:
    at = datetime(2026, 12, 4, 15, 0, 0, 123456, tzinfo=timezone(timedelta(hours=3)))
    ident = uuid.uuid4()
    cursor = encode_cursor(at, ident, 42, 1.5, "anna")
    assert decode_cursor(cursor, (datetime, uuid.UUID, int, float, str)) == [at, ident, 42, 1.5, "anna"]
    assert decode_cursor(cursor, (datetime, uuid.UUID, int, float, str))[0].tzinfo is not None
    assert "=" not in cursor and "/" not in cursor and "+" not in cursor  # safe in a query string


@pytest.mark.parametrize(("cursor", "shape"), [
    ("", (int,)),
    ("not base64 !", (int,)),
    (_raw([1, 5]), (str,)),  # wrong type
    (_raw([1, 5]), (int, int)),  # too few parts
    (_raw([1, 5, 6]), (int,)),  # too many parts
    (_raw([2, 5]), (int,)),  # another version
    (_raw([5]), (int,)),  # no version at all
    (_raw({"a": 1}), (int,)),  # not a list
    (_raw([1, True]), (int,)),  # bool is not an int
    (_raw([1, MAX_CURSOR_INT + 1]), (int,)),  # out of range
    (_raw([1, "not-a-uuid"]), (uuid.UUID,)),
    (_raw([1, 7]), (uuid.UUID,)),
    (_raw([1, "2026-01-01T00:00:00"]), (datetime,)),  # naive time
    (_raw([1, "yesterday"]), (datetime,)),
    (_raw([1, "a\u0000b"]), (str,)),  # PostgreSQL cannot store NUL
    (_raw([1, "inf"]), (float,)),
    ("A" * 5000, (int,)),  # too long
])
def test_invalid_cursors_are_one_clear_422(cursor: str, shape: tuple[type, ...]) -> None:
    with pytest.raises(InvalidInput) as info:
        decode_cursor(cursor, shape)
    assert info.value.detail == INVALID_CURSOR
    assert info.value.status == 422


def test_naive_datetimes_are_refused_when_encoding() -> None:
    with pytest.raises(ValueError, match="timezone"):
        encode_cursor(datetime(2026, 1, 1))


def test_page_of_cuts_at_the_limit_and_points_at_the_last_item() -> None:
    rows = [1, 2, 3, 4]
    assert page_of(rows, 3, lambda r: encode_cursor(r)) == ([1, 2, 3], encode_cursor(3))
    assert page_of(rows[:3], 3, lambda r: encode_cursor(r)) == ([1, 2, 3], None)
    assert page_of([], 3, lambda r: encode_cursor(r)) == ([], None)


def test_limit_and_cursor_bounds_through_http() -> None:
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/items")
    async def items(limit: Limit = 20, cursor: Cursor = None) -> Page[int]:
        start = decode_cursor(cursor, (int,))[0] + 1 if cursor else 0  # the cursor is the last item shown
        rows = list(range(start, start + limit + 1))
        page, nxt = page_of(rows, limit, lambda r: encode_cursor(r))
        return Page[int](items=page, next_cursor=nxt)

    client = TestClient(app)
    first = client.get("/items", params={"limit": 2}).json()
    assert first["items"] == [0, 1]
    second = client.get("/items", params={"limit": 2, "cursor": first["next_cursor"]}).json()
    assert second["items"] == [2, 3]
    for bad in ({"limit": 0}, {"limit": MAX_LIMIT + 1}, {"cursor": "x" * 4001}, {"cursor": "@@@"}):
        resp = client.get("/items", params=bad)
        assert resp.status_code == 422, bad
        assert resp.headers["content-type"].startswith("application/problem+json")
    assert client.get("/items", params={"cursor": "@@@"}).json()["detail"] == INVALID_CURSOR


def test_cursor_time_is_the_same_instant_in_utc() -> None:
    at = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
    (back,) = decode_cursor(encode_cursor(at.astimezone(timezone(timedelta(hours=-5)))), (datetime,))
    assert back == at
