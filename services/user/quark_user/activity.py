"""The caller's activity history, and its purge by age."""

from __future__ import annotations

import uuid
from datetime import timedelta

from sqlalchemy import and_, delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from quark_sdk.errors import InvalidInput
from quark_user.common import (
    ACTIVITY_KINDS,
    ActivityItem,
    _live,
    _me,
    cursor_for,
    now,
    seq_after,
)
from quark_user.models import Activity, Profile


async def list_activity(session: AsyncSession, viewer_id: uuid.UUID | None, *, limit: int, cursor: str | None,
                        kind: str | None = None) -> tuple[list[ActivityItem], str | None]:
    if kind is not None and kind not in ACTIVITY_KINDS:
        raise InvalidInput(f"unknown activity kind {kind!r}", field="kind")
    after = seq_after("activity", cursor)
    async with session.begin():
        me = await _me(session, viewer_id)
        stmt = (
            select(Activity, Profile.username)
            .outerjoin(Profile, and_(Profile.user_id == Activity.target_id, _live()))
            .where(Activity.user_id == me.user_id)
        )
        if kind is not None:
            stmt = stmt.where(Activity.kind == kind)
        if after is not None:
            stmt = stmt.where(Activity.seq < after)
        rows = (await session.execute(stmt.order_by(Activity.seq.desc()).limit(limit + 1))).all()
    items = [ActivityItem(entry=a, target_username=name) for a, name in rows[:limit]]
    next_cursor = cursor_for("activity", rows[limit - 1][0].seq) if len(rows) > limit else None
    return items, next_cursor


async def purge_activity(session: AsyncSession, *, older_than: timedelta) -> int:
    async with session.begin():
        result = await session.execute(
            delete(Activity).where(Activity.created_at < now() - older_than).returning(Activity.seq)
        )
        return len(result.all())
