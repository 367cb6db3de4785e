"""Notifications: stored per user, collapsed by `group_key` while unread, published as quark.notification.created.

They are created by the event consumers (follows, comments, reactions, mentions in comments)
and by the message path (mentions, messages while offline). The live push is done by the
`push` consumer from the published event, after the commit (see events.py).
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import and_, func, literal_column, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from quark_messaging.models import Block, Notification
from quark_messaging.schemas import NotificationCreated, NotificationOut, NotificationPage
from quark_sdk.errors import NotFound
from quark_sdk.outbox import add_event
from quark_sdk.pagination import decode_cursor, encode_cursor, page_of


async def create_notification(
    session: AsyncSession,
    user_id: uuid.UUID,
    kind: str,
    actor_id: uuid.UUID | None,
    data: dict[str, Any],
    *,
    group_key: str | None = None,
) -> int | None:
    """Store one (or bump the unread one with the same group key). Nothing when the user blocked the actor."""
    if actor_id is not None:
        if actor_id == user_id:
            return None
        blocked = await session.scalar(
            select(func.count()).select_from(Block).where(Block.blocker_id == user_id, Block.blocked_id == actor_id)
        )
        if blocked:
            return None
    stmt = pg_insert(Notification).values(user_id=user_id, kind=kind, actor_id=actor_id, data=data, group_key=group_key)
    if group_key is not None:
        stmt = stmt.on_conflict_do_update(
            index_elements=[Notification.user_id, Notification.group_key],
            index_where=and_(Notification.read_at.is_(None), Notification.group_key.is_not(None)),
            set_={"count": Notification.count + 1, "data": data, "actor_id": actor_id, "updated_at": func.now()},
        )
    # xmax = 0 only for a freshly inserted row: a bumped one was already announced.
    row = (
        await session.execute(stmt.returning(Notification.id, Notification.created_at, literal_column("(xmax = 0)")))
    ).one()
    nid, created_at, inserted = row
    if inserted:
        await add_event(
            session,
            NotificationCreated(
                notification_id=nid,
                user_id=str(user_id),
                kind=kind,
                actor_id=str(actor_id) if actor_id else None,
                data=data,
                created_at=created_at,
            ),
        )
    return int(nid)


def notification_out(n: Notification) -> NotificationOut:
    return NotificationOut(
        id=n.id,
        kind=n.kind,
        actor_id=n.actor_id,
        data=n.data,
        count=n.count,
        created_at=n.created_at,
        updated_at=n.updated_at,
        read=n.read_at is not None,
    )


async def list_notifications(
    session: AsyncSession, user_id: uuid.UUID, *, unread_only: bool, limit: int, cursor: str | None
) -> NotificationPage:
    stmt = select(Notification).where(Notification.user_id == user_id).order_by(Notification.id.desc())
    if unread_only:
        stmt = stmt.where(Notification.read_at.is_(None))
    if cursor:
        (before,) = decode_cursor(cursor, (int,))
        stmt = stmt.where(Notification.id < before)
    rows = list(await session.scalars(stmt.limit(limit + 1)))
    page, nxt = page_of(rows, limit, lambda n: encode_cursor(n.id))
    return NotificationPage(items=[notification_out(n) for n in page], next_cursor=nxt)


async def unread_count(session: AsyncSession, user_id: uuid.UUID) -> int:
    n = await session.scalar(
        select(func.count())
        .select_from(Notification)
        .where(Notification.user_id == user_id, Notification.read_at.is_(None))
    )
    return int(n or 0)


async def mark_read(session: AsyncSession, user_id: uuid.UUID, notification_id: int) -> NotificationOut:
    async with session.begin():
        n = await session.scalar(
            select(Notification)
            .where(Notification.id == notification_id, Notification.user_id == user_id)
            .with_for_update()
        )
        if n is None:
            raise NotFound("notification not found")
        if n.read_at is None:
            n.read_at = func.now()
            await session.flush()
            await session.refresh(n)
        return notification_out(n)


async def mark_all_read(session: AsyncSession, user_id: uuid.UUID) -> int:
    async with session.begin():
        result = await session.execute(
            update(Notification)
            .where(Notification.user_id == user_id, Notification.read_at.is_(None))
            .values(read_at=func.now())
        )
    return int(getattr(result, "rowcount", 0) or 0)


async def mark_group_read(session: AsyncSession, user_id: uuid.UUID, group_key: str) -> None:
    async with session.begin():
        await session.execute(
            update(Notification)
            .where(Notification.user_id == user_id, Notification.group_key == group_key, Notification.read_at.is_(None))
            .values(read_at=func.now())
        )
