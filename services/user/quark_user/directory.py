"""Finding people by username or display name."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import Select, exists, func, literal, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from quark_sdk.errors import InvalidInput
from quark_user.common import (
    Viewer,
    _live,
    cursor_for,
    key_after,
)
from quark_user.models import Block, Profile
from quark_user.validation import (
    _escape_like,
    _has_control,
    _text_param,
)

# --------------------------------------------------------------------------- search and admin


def search_statement(q: str, *, viewer_id: uuid.UUID | None, after: str | None, limit: int) -> Select[Any]:
    """Case-insensitive prefix match on username or display name, ordered by username.

    Both predicates are `lower(col) LIKE 'prefix%'`, served by the text_pattern_ops indexes
    `uq_profiles_username_lower` and `ix_profiles_display_name_prefix` (a BitmapOr of two range scans).
    """
    pattern = func.lower(literal(_escape_like(q) + "%"))
    key = func.lower(Profile.username).collate("C")  # bytewise: the same order on every server
    stmt = select(Profile, key.label("key")).where(
        _live(),
        Profile.suspended.is_(False),
        or_(func.lower(Profile.username).like(pattern, escape="\\"),
            func.lower(Profile.display_name).like(pattern, escape="\\")),
    )
    if viewer_id is not None:  # accounts that block the caller do not show up for them
        stmt = stmt.where(~exists().where(Block.blocker_id == Profile.user_id, Block.blocked_id == viewer_id))
    if after is not None:
        stmt = stmt.where(key > after)
    return stmt.order_by(key).limit(limit + 1)


async def search(session: AsyncSession, viewer: Viewer, q: str, *, limit: int,
                 cursor: str | None) -> tuple[list[Profile], str | None]:
    q = q.strip().removeprefix("@")
    if not q:
        raise InvalidInput("q must not be empty", field="q")
    if _has_control(q):
        raise InvalidInput("q must not contain control characters", field="q")
    after = None if cursor is None else _text_param(key_after("search", cursor), "cursor")
    async with session.begin():
        rows = (await session.execute(search_statement(q, viewer_id=viewer.user_id, after=after,
                                                       limit=limit))).all()
    items = [p for p, _ in rows[:limit]]
    next_cursor = cursor_for("search", rows[limit - 1][1]) if len(rows) > limit else None
    return items, next_cursor


