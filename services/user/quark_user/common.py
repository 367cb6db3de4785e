"""What every part of the user service shares: who is asking, the deadlock retry, cursors, profile
lookups and locks, the activity log and the profile event.

Functions called by routes open their own transaction (`async with session.begin()`);
the `apply_*` functions called by event consumers (consumed.py) run inside the consumer's transaction.
Every change to the social graph locks the two profiles involved (in user-id order, so two
opposite actions cannot deadlock) before checking anything: the checks (blocks, privacy,
suspension, duplicates) and the change, its counters and its event form one unit.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import wraps
from typing import Any, ParamSpec, TypeVar

from sqlalchemy import ColumnElement, and_, exists, func, literal, select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from quark_sdk.errors import InvalidInput, NotFound
from quark_sdk.outbox import add_event
from quark_sdk.pagination import decode_cursor, encode_cursor
from quark_user.models import Activity, Block, Follow, FollowRequest, Mute, Profile
from quark_user.schemas import (
    ProfileUpdated,
    UserAvatar,
)
from quark_user.validation import (
    _has_control,
)

# media.processed events with these purposes are remembered even before anyone picks them as avatar.
AVATAR_PURPOSES = frozenset({None, "", "avatar"})
MAX_VARIANTS = 16
ACTIVITY_KINDS = frozenset({
    "registered", "verified", "login", "password_changed", "role_changed", "profile_updated", "avatar_updated",
    "followed", "unfollowed", "follow_requested", "follow_request_cancelled", "follow_request_approved",
    "follow_request_rejected", "follower_removed", "blocked", "unblocked", "muted", "unmuted", "suspended",
    "unsuspended", "warned",
})


@dataclass(frozen=True)
class Viewer:
    """Who is asking: `user_id` is None for anonymous callers (or a token whose subject is not a user id)."""

    user_id: uuid.UUID | None
    is_admin: bool = False


@dataclass
class ProfileView:
    profile: Profile
    full: bool  # bio, links, locale and the lists are visible to this viewer
    relationship: dict[str, bool] | None


@dataclass
class Edge:
    profile: Profile
    since: datetime


@dataclass
class ActivityItem:
    entry: Activity
    target_username: str | None


P = ParamSpec("P")
R = TypeVar("R")
RETRYABLE_SQLSTATES = frozenset({"40P01", "40001"})  # deadlock detected, serialization failure


def retry_transaction(fn: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
    """Run a transactional service function again (up to 5 times) if PostgreSQL aborted it as a deadlock victim.

    Graph changes lock profiles in user-id order, so deadlocks need unusual overlaps (a privacy switch
    approving requests while a requester acts); when one happens the caller still gets an answer, not a 500.
    """

    @wraps(fn)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        for attempt in range(5):
            try:
                return await fn(*args, **kwargs)
            except DBAPIError as exc:
                if attempt == 4 or getattr(exc.orig, "sqlstate", None) not in RETRYABLE_SQLSTATES:
                    raise
                # Jittered backoff: the transactions that collided must not collide again in lockstep.
                await asyncio.sleep(random.uniform(0.005, 0.02) * (attempt + 1))
        raise AssertionError("unreachable")

    return wrapper


def now() -> datetime:
    return datetime.now(UTC)


def parse_user_id(subject: str | None) -> uuid.UUID | None:
    if not subject:
        return None
    try:
        return uuid.UUID(subject)
    except ValueError:
        return None


# --------------------------------------------------------------------------- cursors
# The SDK's codec (quark_sdk.pagination), with the list's name as the first part: a cursor is valid
# only for the list that produced it.


def cursor_for(kind: str, value: str | int) -> str:
    return encode_cursor(kind, value)


def _after(kind: str, cursor: str, part: type) -> Any:
    name, value = decode_cursor(cursor, (str, part))
    if name != kind:
        raise InvalidInput("cursor is not valid for this list", field="cursor")
    return value


def seq_after(kind: str, cursor: str | None) -> int | None:
    """The sequence number a page continues after (None: the first page)."""
    if cursor is None:
        return None
    value: int = _after(kind, cursor, int)
    if value < 0:
        raise InvalidInput("cursor is not valid for this list", field="cursor")
    return value


def key_after(kind: str, cursor: str) -> str:
    value: str = _after(kind, cursor, str)
    return value


# --------------------------------------------------------------------------- lookups and locks


def _live() -> ColumnElement[bool]:
    return Profile.deleted_at.is_(None)


async def _by_username(session: AsyncSession, username: str, *, lock: bool = False) -> Profile:
    if _has_control(username):
        raise NotFound(f"no user named {username!r}")
    stmt = select(Profile).where(func.lower(Profile.username) == func.lower(literal(username)), _live())
    if lock:
        stmt = stmt.with_for_update()
    profile = (await session.scalars(stmt.execution_options(populate_existing=True))).first()
    if profile is None:
        raise NotFound(f"no user named {username!r}")
    return profile


async def _by_id(session: AsyncSession, user_id: uuid.UUID, *, lock: bool = False,
                 include_deleted: bool = False) -> Profile | None:
    stmt = select(Profile).where(Profile.user_id == user_id)
    if not include_deleted:
        stmt = stmt.where(_live())
    if lock:
        stmt = stmt.with_for_update()
    return (await session.scalars(stmt.execution_options(populate_existing=True))).first()


async def _me(session: AsyncSession, user_id: uuid.UUID | None, *, lock: bool = False) -> Profile:
    profile = None if user_id is None else await _by_id(session, user_id, lock=lock)
    if profile is None:
        raise NotFound("your profile does not exist (yet): it is created when the account registration is "
                       "processed", code="profile-not-found")
    return profile


async def _lock_pair(session: AsyncSession, me_id: uuid.UUID, other_id: uuid.UUID) -> tuple[Profile, Profile]:
    """Lock both profiles in user-id order: concurrent opposite actions serialise instead of deadlocking."""
    rows = (await session.scalars(
        select(Profile).where(Profile.user_id.in_([me_id, other_id]), _live())
        .order_by(Profile.user_id).with_for_update().execution_options(populate_existing=True)
    )).all()
    found = {p.user_id: p for p in rows}
    if me_id not in found:
        await _me(session, None)
    if other_id not in found:
        raise NotFound("that user no longer exists")
    return found[me_id], found[other_id]


async def _exists(session: AsyncSession, model: Any, **keys: uuid.UUID) -> bool:
    cond = and_(*(getattr(model, k) == v for k, v in keys.items()))
    return bool(await session.scalar(select(exists().where(cond))))


async def _relationship(session: AsyncSession, me: uuid.UUID, other: uuid.UUID) -> dict[str, bool]:
    checks = {
        "following": exists().where(Follow.follower_id == me, Follow.followee_id == other),
        "requested": exists().where(FollowRequest.requester_id == me, FollowRequest.target_id == other),
        "followed_by": exists().where(Follow.follower_id == other, Follow.followee_id == me),
        "blocking": exists().where(Block.blocker_id == me, Block.blocked_id == other),
        "blocked_by": exists().where(Block.blocker_id == other, Block.blocked_id == me),
        "muting": exists().where(Mute.muter_id == me, Mute.muted_id == other),
    }
    row = (await session.execute(select(*(c.label(k) for k, c in checks.items())))).one()
    return {k: bool(v) for k, v in row._mapping.items()}


def _log(session: AsyncSession, user_id: uuid.UUID, kind: str, *, target_id: uuid.UUID | None = None,
         at: datetime | None = None, **data: Any) -> None:
    session.add(Activity(user_id=user_id, kind=kind, target_id=target_id, created_at=at or now(),
                         data={k: v for k, v in data.items() if v is not None}))


def _avatar(profile: Profile) -> UserAvatar | None:
    if profile.avatar_media_id is None:
        return None
    return UserAvatar(media_id=profile.avatar_media_id, variants=dict(profile.avatar_variants or {}))


async def _publish_profile_updated(session: AsyncSession, profile: Profile, changed: Sequence[str]) -> None:
    await add_event(session, ProfileUpdated(
        user_id=str(profile.user_id), username=profile.username, display_name=profile.display_name,
        bio=profile.bio, avatar=_avatar(profile), privacy=profile.privacy,
        links=list(profile.links), locale=profile.locale, changed=list(changed),
    ), subject=str(profile.user_id))
