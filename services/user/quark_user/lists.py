"""The social lists, newest first by the edge's sequence number: followers, following, requests, blocks, mutes."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from quark_sdk.errors import PermissionDenied
from quark_user.common import (
    Edge,
    Viewer,
    _by_username,
    _live,
    _me,
    cursor_for,
    seq_after,
)
from quark_user.models import Block, Follow, FollowRequest, Mute, Profile
from quark_user.profiles import _view

# --------------------------------------------------------------------------- lists (keyset pagination)


async def _edge_page(session: AsyncSession, model: Any, *, owner_col: str, other_col: str, owner_id: uuid.UUID,
                     kind: str, limit: int, cursor: str | None) -> tuple[list[Edge], str | None]:
    """Newest first by the edge's sequence number: a page boundary never moves when edges are added."""
    after = seq_after(kind, cursor)
    seq = getattr(model, "seq")  # noqa: B009 - generic over the edge models
    stmt = (
        select(Profile, getattr(model, "created_at"), seq)  # noqa: B009
        .join(model, getattr(model, other_col) == Profile.user_id)
        .where(getattr(model, owner_col) == owner_id, _live())
    )
    if after is not None:
        stmt = stmt.where(seq < after)
    rows = (await session.execute(stmt.order_by(seq.desc()).limit(limit + 1))).all()
    items = [Edge(profile=p, since=since) for p, since, _ in rows[:limit]]
    next_cursor = cursor_for(kind, rows[limit - 1][2]) if len(rows) > limit else None
    return items, next_cursor


async def list_follows(session: AsyncSession, viewer: Viewer, username: str, *, direction: str, limit: int,
                       cursor: str | None) -> tuple[list[Edge], str | None]:
    """`direction` is 'followers' or 'following'; followers-only accounts show them to followers only."""
    async with session.begin():
        # "me" is the caller (usernames "me", "search" and "admin" are reserved by the routes anyway).
        profile = await _me(session, viewer.user_id) if username == "me" else await _by_username(session, username)
        view = await _view(session, viewer, profile)
        if not view.full:
            raise PermissionDenied(f"{profile.username}'s {direction} are visible to their followers only")
        if direction == "followers":
            return await _edge_page(session, Follow, owner_col="followee_id", other_col="follower_id",
                                    owner_id=profile.user_id, kind="followers", limit=limit, cursor=cursor)
        return await _edge_page(session, Follow, owner_col="follower_id", other_col="followee_id",
                                owner_id=profile.user_id, kind="following", limit=limit, cursor=cursor)


async def list_own(session: AsyncSession, viewer_id: uuid.UUID | None, what: str, *, limit: int,
                   cursor: str | None) -> tuple[list[Edge], str | None]:
    """The caller's pending follow requests ('requests'), blocks ('blocks') or mutes ('mutes')."""
    async with session.begin():
        me = await _me(session, viewer_id)
        if what == "requests":
            return await _edge_page(session, FollowRequest, owner_col="target_id", other_col="requester_id",
                                    owner_id=me.user_id, kind=what, limit=limit, cursor=cursor)
        if what == "blocks":
            return await _edge_page(session, Block, owner_col="blocker_id", other_col="blocked_id",
                                    owner_id=me.user_id, kind=what, limit=limit, cursor=cursor)
        return await _edge_page(session, Mute, owner_col="muter_id", other_col="muted_id",
                                owner_id=me.user_id, kind="mutes", limit=limit, cursor=cursor)


