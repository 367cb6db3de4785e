"""Blocks and mutes."""

from __future__ import annotations

import uuid

from sqlalchemy import delete
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from quark_sdk.errors import Conflict, InvalidInput, NotFound
from quark_sdk.outbox import add_event
from quark_user.common import (
    _by_username,
    _exists,
    _lock_pair,
    _log,
    _me,
    now,
    retry_transaction,
)
from quark_user.follows import _remove_follow, _remove_request
from quark_user.models import Block, Mute
from quark_user.schemas import (
    UserBlocked,
    UserMuted,
    UserUnblocked,
    UserUnmuted,
)

# --------------------------------------------------------------------------- blocks and mutes


@retry_transaction
async def block(session: AsyncSession, viewer_id: uuid.UUID | None, username: str) -> None:
    async with session.begin():
        me = await _me(session, viewer_id)
        target = await _by_username(session, username)
        if target.user_id == me.user_id:
            raise InvalidInput("you cannot block yourself", field="username")
        me, target = await _lock_pair(session, me.user_id, target.user_id)
        if await _exists(session, Block, blocker_id=me.user_id, blocked_id=target.user_id):
            raise Conflict(f"you already block {target.username}", code="already-blocked")
        at = now()
        session.add(Block(blocker_id=me.user_id, blocked_id=target.user_id, created_at=at))
        # No follows either way, and no pending requests either way.
        await _remove_follow(session, me, target, at)
        await _remove_follow(session, target, me, at)
        await _remove_request(session, me.user_id, target.user_id)
        await _remove_request(session, target.user_id, me.user_id)
        await add_event(session, UserBlocked(blocker_id=str(me.user_id), blocked_id=str(target.user_id), at=at),
                        subject=str(target.user_id))
        _log(session, me.user_id, "blocked", target_id=target.user_id, at=at)


async def unblock(session: AsyncSession, viewer_id: uuid.UUID | None, username: str) -> None:
    async with session.begin():
        me = await _me(session, viewer_id)
        target = await _by_username(session, username)
        gone = (await session.execute(
            delete(Block).where(Block.blocker_id == me.user_id, Block.blocked_id == target.user_id)
            .returning(Block.seq)
        )).first()
        if gone is None:
            raise NotFound(f"you do not block {target.username}", code="not-blocked")
        at = now()
        await add_event(session, UserUnblocked(blocker_id=str(me.user_id), blocked_id=str(target.user_id), at=at),
                        subject=str(target.user_id))
        _log(session, me.user_id, "unblocked", target_id=target.user_id, at=at)


async def mute(session: AsyncSession, viewer_id: uuid.UUID | None, username: str) -> None:
    async with session.begin():
        me = await _me(session, viewer_id)
        target = await _by_username(session, username)
        if target.user_id == me.user_id:
            raise InvalidInput("you cannot mute yourself", field="username")
        at = now()
        added = (await session.execute(
            pg_insert(Mute).values(muter_id=me.user_id, muted_id=target.user_id, created_at=at)
            .on_conflict_do_nothing(index_elements=[Mute.muter_id, Mute.muted_id]).returning(Mute.seq)
        )).first()
        if added is None:
            raise Conflict(f"you already mute {target.username}", code="already-muted")
        await add_event(session, UserMuted(muter_id=str(me.user_id), muted_id=str(target.user_id), at=at),
                        subject=str(me.user_id))
        _log(session, me.user_id, "muted", target_id=target.user_id, at=at)


async def unmute(session: AsyncSession, viewer_id: uuid.UUID | None, username: str) -> None:
    async with session.begin():
        me = await _me(session, viewer_id)
        target = await _by_username(session, username)
        gone = (await session.execute(
            delete(Mute).where(Mute.muter_id == me.user_id, Mute.muted_id == target.user_id).returning(Mute.seq)
        )).first()
        if gone is None:
            raise NotFound(f"you do not mute {target.username}", code="not-muted")
        at = now()
        await add_event(session, UserUnmuted(muter_id=str(me.user_id), muted_id=str(target.user_id), at=at),
                        subject=str(me.user_id))
        _log(session, me.user_id, "unmuted", target_id=target.user_id, at=at)
