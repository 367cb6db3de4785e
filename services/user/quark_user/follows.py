"""Follows and follow requests: follow, unfollow, remove a follower, answer requests."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from quark_sdk.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from quark_sdk.outbox import add_event
from quark_user.common import (
    _by_username,
    _exists,
    _live,
    _lock_pair,
    _log,
    _me,
    now,
    retry_transaction,
)
from quark_user.models import Block, Follow, FollowRequest, Profile
from quark_user.schemas import (
    FollowRequested,
    UserFollowed,
    UserUnfollowed,
)

# --------------------------------------------------------------------------- follows


@retry_transaction
async def follow(session: AsyncSession, viewer_id: uuid.UUID | None, username: str) -> str:
    """Follow `username`, or ask to when the account is followers-only. Returns 'following' or 'requested'."""
    async with session.begin():
        me = await _me(session, viewer_id)
        target = await _by_username(session, username)
        if target.user_id == me.user_id:
            raise InvalidInput("you cannot follow yourself", field="username")
        me, target = await _lock_pair(session, me.user_id, target.user_id)
        if me.suspended:
            raise PermissionDenied("your account is suspended")
        if target.suspended:
            raise PermissionDenied(f"{target.username} is suspended and cannot be followed")
        if await _exists(session, Block, blocker_id=me.user_id, blocked_id=target.user_id):
            raise Conflict(f"you block {target.username}; unblock them first")
        if await _exists(session, Block, blocker_id=target.user_id, blocked_id=me.user_id):
            raise PermissionDenied(f"you cannot follow {target.username}")
        if await _exists(session, Follow, follower_id=me.user_id, followee_id=target.user_id):
            raise Conflict(f"you already follow {target.username}", code="already-following")
        at = now()
        if target.privacy == "followers":
            if await _exists(session, FollowRequest, requester_id=me.user_id, target_id=target.user_id):
                raise Conflict(f"your follow request to {target.username} is already pending",
                               code="already-requested")
            session.add(FollowRequest(requester_id=me.user_id, target_id=target.user_id, created_at=at))
            await add_event(session, FollowRequested(follower_id=str(me.user_id), followee_id=str(target.user_id),
                                                     at=at), subject=str(target.user_id))
            _log(session, me.user_id, "follow_requested", target_id=target.user_id, at=at)
            return "requested"
        await _add_follow(session, me, target, at)
        _log(session, me.user_id, "followed", target_id=target.user_id, at=at)
        return "following"


async def _add_follow(session: AsyncSession, follower: Profile, followee: Profile, at: datetime) -> None:
    """Both profiles are locked by the caller, and the edge is known not to exist."""
    session.add(Follow(follower_id=follower.user_id, followee_id=followee.user_id, created_at=at))
    follower.following_count += 1
    followee.followers_count += 1
    await add_event(session, UserFollowed(
        follower_id=str(follower.user_id), follower_username=follower.username,
        followee_id=str(followee.user_id), followee_username=followee.username, at=at,
    ), subject=str(followee.user_id))


async def _remove_follow(session: AsyncSession, follower: Profile, followee: Profile, at: datetime) -> bool:
    """Both profiles are locked by the caller. Returns False when there was no such edge."""
    gone = (await session.execute(
        delete(Follow).where(Follow.follower_id == follower.user_id, Follow.followee_id == followee.user_id)
        .returning(Follow.seq)
    )).first()
    if gone is None:
        return False
    follower.following_count -= 1
    followee.followers_count -= 1
    await add_event(session, UserUnfollowed(follower_id=str(follower.user_id), followee_id=str(followee.user_id),
                                            at=at), subject=str(followee.user_id))
    return True


async def _remove_request(session: AsyncSession, requester_id: uuid.UUID, target_id: uuid.UUID) -> bool:
    gone = (await session.execute(
        delete(FollowRequest).where(FollowRequest.requester_id == requester_id, FollowRequest.target_id == target_id)
        .returning(FollowRequest.seq)
    )).first()
    return gone is not None


@retry_transaction
async def unfollow(session: AsyncSession, viewer_id: uuid.UUID | None, username: str) -> str:
    """Stop following (or withdraw a pending request). Returns 'unfollowed' or 'request_cancelled'."""
    async with session.begin():
        me = await _me(session, viewer_id)
        target = await _by_username(session, username)
        if target.user_id == me.user_id:
            raise InvalidInput("you cannot unfollow yourself", field="username")
        me, target = await _lock_pair(session, me.user_id, target.user_id)
        at = now()
        if await _remove_follow(session, me, target, at):
            _log(session, me.user_id, "unfollowed", target_id=target.user_id, at=at)
            return "unfollowed"
        if await _remove_request(session, me.user_id, target.user_id):
            _log(session, me.user_id, "follow_request_cancelled", target_id=target.user_id, at=at)
            return "request_cancelled"
        raise NotFound(f"you do not follow {target.username}", code="not-following")


@retry_transaction
async def remove_follower(session: AsyncSession, viewer_id: uuid.UUID | None, username: str) -> None:
    async with session.begin():
        me = await _me(session, viewer_id)
        other = await _by_username(session, username)
        if other.user_id == me.user_id:
            raise InvalidInput("you do not follow yourself", field="username")
        me, other = await _lock_pair(session, me.user_id, other.user_id)
        at = now()
        if not await _remove_follow(session, other, me, at):
            raise NotFound(f"{other.username} does not follow you", code="not-following")
        _log(session, me.user_id, "follower_removed", target_id=other.user_id, at=at)


@retry_transaction
async def approve_request(session: AsyncSession, viewer_id: uuid.UUID | None, username: str) -> None:
    async with session.begin():
        me = await _me(session, viewer_id)
        requester = await _by_username(session, username)
        me, requester = await _lock_pair(session, me.user_id, requester.user_id)
        if me.suspended:
            raise PermissionDenied("your account is suspended")
        if not await _remove_request(session, requester.user_id, me.user_id):
            raise NotFound(f"no pending follow request from {requester.username}", code="no-request")
        at = now()
        if not await _exists(session, Follow, follower_id=requester.user_id, followee_id=me.user_id):
            await _add_follow(session, requester, me, at)
            _log(session, requester.user_id, "followed", target_id=me.user_id, at=at, via="request")
        _log(session, me.user_id, "follow_request_approved", target_id=requester.user_id, at=at)


async def reject_request(session: AsyncSession, viewer_id: uuid.UUID | None, username: str) -> None:
    async with session.begin():
        me = await _me(session, viewer_id)
        requester = await _by_username(session, username)
        if not await _remove_request(session, requester.user_id, me.user_id):
            raise NotFound(f"no pending follow request from {requester.username}", code="no-request")
        _log(session, me.user_id, "follow_request_rejected", target_id=requester.user_id)


async def _approve_all_requests(session: AsyncSession, profile: Profile) -> None:
    """A followers-only account went public: its pending requests become follows (profile is locked)."""
    ids = list((await session.scalars(
        select(FollowRequest.requester_id).where(FollowRequest.target_id == profile.user_id)
    )).all())
    if not ids:
        return
    requesters = (await session.scalars(
        select(Profile).where(Profile.user_id.in_(ids), _live()).order_by(Profile.user_id)
        .with_for_update().execution_options(populate_existing=True)
    )).all()
    await session.execute(delete(FollowRequest).where(FollowRequest.target_id == profile.user_id))
    at = now()
    for requester in requesters:
        if not await _exists(session, Follow, follower_id=requester.user_id, followee_id=profile.user_id):
            await _add_follow(session, requester, profile, at)
            _log(session, requester.user_id, "followed", target_id=profile.user_id, at=at, via="request")
