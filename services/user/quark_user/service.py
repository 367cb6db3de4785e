"""Business logic of the user service: plain functions over a session, no HTTP types.

Functions called by routes open their own transaction (`async with session.begin()`);
the `apply_*` functions called by event consumers run inside the consumer's transaction.
Every change to the social graph locks the two profiles involved (in user-id order, so two
opposite actions cannot deadlock) before checking anything: the checks (blocks, privacy,
suspension, duplicates) and the change, its counters and its event form one unit.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import random
import re
import unicodedata
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import wraps
from typing import Any, ParamSpec, TypeVar
from urllib.parse import urlsplit

from sqlalchemy import ColumnElement, Select, and_, delete, exists, func, literal, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from quark_sdk.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from quark_sdk.events import PermanentEventError
from quark_sdk.outbox import add_event
from quark_user.models import Activity, Block, Follow, FollowRequest, MediaAsset, Mute, Profile
from quark_user.schemas import (
    AuthPasswordChanged,
    AuthRoleChanged,
    AuthUserDeleted,
    AuthUserLoggedIn,
    AuthUserRegistered,
    AuthUserVerified,
    FollowRequested,
    MediaDeleted,
    MediaProcessed,
    ProfileCreated,
    ProfileUpdated,
    UserAvatar,
    UserBlocked,
    UserDeleted,
    UserFollowed,
    UserMuted,
    UserSuspended,
    UserUnblocked,
    UserUnfollowed,
    UserUnmuted,
)

DISPLAY_NAME_COLUMN_MAX = 100
# media.processed events with these purposes are remembered even before anyone picks them as avatar.
AVATAR_PURPOSES = frozenset({None, "", "avatar"})
MAX_VARIANTS = 16
ACTIVITY_KINDS = frozenset({
    "registered", "verified", "login", "password_changed", "role_changed", "profile_updated", "avatar_updated",
    "followed", "unfollowed", "follow_requested", "follow_request_cancelled", "follow_request_approved",
    "follow_request_rejected", "follower_removed", "blocked", "unblocked", "muted", "unmuted", "suspended",
    "unsuspended",
})


@dataclass(frozen=True)
class Limits:
    """The configurable profile limits (from UserSettings)."""

    display_name_max_length: int = 100
    bio_max_length: int = 500
    links_max_count: int = 5
    link_max_length: int = 300


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


def encode_cursor(kind: str, value: str | int) -> str:
    return base64.urlsafe_b64encode(f"{kind}:{value}".encode()).decode().rstrip("=")


def _decode_cursor(kind: str, cursor: str) -> str:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raw = ""
    prefix, sep, value = raw.partition(":")
    if prefix != kind or not sep:
        raise InvalidInput("cursor is not valid for this list", field="cursor")
    return value


def decode_seq_cursor(kind: str, cursor: str | None) -> int | None:
    if cursor is None:
        return None
    value = _decode_cursor(kind, cursor)
    if not value.isascii() or not value.isdigit() or len(value) > 19 or int(value) >= 2**63:
        raise InvalidInput("cursor is not valid for this list", field="cursor")
    return int(value)


# --------------------------------------------------------------------------- validation

_LOCALE = re.compile(
    r"^(?P<lang>[A-Za-z]{2,3})(?:-(?P<script>[A-Za-z]{4}))?(?:-(?P<region>[A-Za-z]{2}|[0-9]{3}))?"
    r"(?P<variants>(?:-(?:[A-Za-z0-9]{5,8}|[0-9][A-Za-z0-9]{3}))*)$"
)
_MEDIA_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")
_HOST_LABEL = re.compile(r"^(?!-)[A-Za-z0-9\-\u00a1-\uffff]{1,63}(?<!-)$")


def _has_control(value: str, allowed: str = "") -> bool:
    return any(unicodedata.category(ch) in ("Cc", "Cs", "Co") and ch not in allowed for ch in value)


def _text_param(value: str, field: str) -> str:
    """A free-text query parameter on its way into SQL: control characters (NUL above all) are refused."""
    if _has_control(value):
        raise InvalidInput(f"{field} must not contain control characters", field=field)
    return value


def normalize_locale(value: str) -> str:
    """BCP 47-ish: language[-Script][-REGION][-variant…], canonical casing ('EN_us' → 'en-US')."""
    m = _LOCALE.fullmatch(value.strip().replace("_", "-"))
    if m is None:
        raise InvalidInput("locale must be a language tag like 'en', 'pt-BR' or 'zh-Hant-TW'", field="locale")
    out = m["lang"].lower()
    if m["script"]:
        out += "-" + m["script"].title()
    if m["region"]:
        out += "-" + m["region"].upper()
    if m["variants"]:
        out += m["variants"].lower()
    return out


def validate_link(value: str, *, field: str, max_length: int) -> str:
    link = value.strip()
    if not link:
        raise InvalidInput("link must not be empty", field=field)
    if len(link) > max_length:
        raise InvalidInput(f"link is longer than {max_length} characters", field=field)
    if _has_control(link) or any(ch.isspace() for ch in link):
        raise InvalidInput("link must not contain spaces or control characters", field=field)
    try:
        parts = urlsplit(link)
        port = parts.port  # raises ValueError for a bad port
    except ValueError as exc:
        raise InvalidInput("link is not a valid URL", field=field) from exc
    if parts.scheme.lower() not in ("http", "https"):
        raise InvalidInput("link must be an http:// or https:// URL", field=field)
    if parts.username is not None or parts.password is not None:
        raise InvalidInput("link must not contain credentials", field=field)
    host = parts.hostname or ""
    labels = host.split(".")
    numeric_tld = labels[-1].isdigit() and not all(label.isdigit() for label in labels)  # "a.123" is no host
    if "." not in host or numeric_tld or not all(_HOST_LABEL.fullmatch(label) for label in labels):
        raise InvalidInput("link must name a host like example.com", field=field)
    if port == 0:
        raise InvalidInput("link is not a valid URL", field=field)
    return link


def validate_update(changes: dict[str, Any], limits: Limits) -> dict[str, Any]:
    """Check and normalise a PATCH body (only the fields present); raises InvalidInput naming the field."""
    if not changes:
        raise InvalidInput("nothing to update: send at least one field")
    clean: dict[str, Any] = {}
    if "display_name" in changes:
        name = changes["display_name"]
        if name is not None:
            name = unicodedata.normalize("NFC", name).strip()
            if not name:
                raise InvalidInput("display name must not be blank (send null to clear it)", field="display_name")
            if _has_control(name):
                raise InvalidInput("display name must not contain control characters", field="display_name")
            if len(name) > limits.display_name_max_length:
                raise InvalidInput(f"display name is longer than {limits.display_name_max_length} characters",
                                   field="display_name")
        clean["display_name"] = name
    if "bio" in changes:
        bio = unicodedata.normalize("NFC", (changes["bio"] or "").replace("\r\n", "\n")).strip()
        if _has_control(bio, allowed="\n\t"):
            raise InvalidInput("bio must not contain control characters", field="bio")
        if len(bio) > limits.bio_max_length:
            raise InvalidInput(f"bio is longer than {limits.bio_max_length} characters", field="bio")
        clean["bio"] = bio
    if "links" in changes:
        links = changes["links"] or []
        if len(links) > limits.links_max_count:
            raise InvalidInput(f"at most {limits.links_max_count} links", field="links")
        clean_links = [validate_link(v, field=f"links.{i}", max_length=limits.link_max_length)
                       for i, v in enumerate(links)]
        if len({v.lower() for v in clean_links}) != len(clean_links):
            raise InvalidInput("links must not repeat", field="links")
        clean["links"] = clean_links
    if "locale" in changes:
        clean["locale"] = None if changes["locale"] is None else normalize_locale(changes["locale"])
    if "privacy" in changes:
        if changes["privacy"] is None:
            raise InvalidInput("privacy must be 'public' or 'followers'", field="privacy")
        clean["privacy"] = changes["privacy"]
    if "avatar_media_id" in changes:
        media_id = changes["avatar_media_id"]
        if media_id is not None and not _MEDIA_ID.fullmatch(media_id):
            raise InvalidInput("avatar_media_id is not a media id", field="avatar_media_id")
        clean["avatar_media_id"] = media_id
    return clean


def _clean_display_name(value: str | None) -> str | None:
    """For names arriving in events: never reject, just make them fit."""
    if value is None:
        return None
    name = "".join(ch for ch in unicodedata.normalize("NFC", value) if not _has_control(ch)).strip()
    return name[:DISPLAY_NAME_COLUMN_MAX] or None


def _escape_like(value: str) -> str:
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


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


# --------------------------------------------------------------------------- reading profiles


async def get_profile(session: AsyncSession, viewer: Viewer, username: str) -> ProfileView:
    async with session.begin():
        profile = await _by_username(session, username)
        return await _view(session, viewer, profile)


async def _view(session: AsyncSession, viewer: Viewer, profile: Profile) -> ProfileView:
    if viewer.user_id == profile.user_id or viewer.is_admin:
        rel = None if viewer.user_id in (None, profile.user_id) else \
            await _relationship(session, viewer.user_id, profile.user_id)
        return ProfileView(profile, True, rel)
    if viewer.user_id is None:
        return ProfileView(profile, profile.privacy == "public", None)
    rel = await _relationship(session, viewer.user_id, profile.user_id)
    full = not rel["blocked_by"] and (profile.privacy == "public" or rel["following"])
    return ProfileView(profile, full, rel)


async def get_me(session: AsyncSession, user_id: uuid.UUID | None) -> Profile:
    async with session.begin():
        return await _me(session, user_id)


# --------------------------------------------------------------------------- editing profiles


@retry_transaction
async def update_profile(session: AsyncSession, *, actor: Viewer, changes: dict[str, Any], limits: Limits,
                         username: str | None = None) -> Profile:
    """Owner edit (`username` None → the actor's own profile) or admin edit of `username`."""
    clean = validate_update(changes, limits)
    async with session.begin():
        if username is None and clean.get("privacy") == "public" and actor.user_id is not None:
            # Going public approves pending requests: lock the owner and every requester in one statement,
            # in user-id order like every other graph change, so a requester acting meanwhile cannot deadlock us.
            requester_ids = list((await session.scalars(
                select(FollowRequest.requester_id).where(FollowRequest.target_id == actor.user_id))).all())
            if requester_ids:
                await session.execute(
                    select(Profile.user_id).where(Profile.user_id.in_([actor.user_id, *requester_ids]))
                    .order_by(Profile.user_id).with_for_update())
        if username is None:
            profile = await _me(session, actor.user_id, lock=True)
            if profile.suspended:
                raise PermissionDenied("your account is suspended; the profile cannot be edited")
        else:
            if not actor.is_admin:
                raise PermissionDenied("only an admin edits another user's profile")
            profile = await _by_username(session, username, lock=True)
        changed: list[str] = []
        for name in ("display_name", "bio", "links", "locale", "privacy"):
            if name in clean and getattr(profile, name) != clean[name]:
                setattr(profile, name, clean[name])
                changed.append(name)
        if "avatar_media_id" in clean and await _choose_avatar(session, profile, clean["avatar_media_id"]):
            changed.append("avatar")
        if "privacy" in changed and profile.privacy == "public":
            await _approve_all_requests(session, profile)
        if changed:
            profile.updated_at = now()
            await _publish_profile_updated(session, profile, changed)
            by_other = actor.user_id is not None and actor.user_id != profile.user_id
            _log(session, profile.user_id, "profile_updated", fields=changed,
                 actor_id=str(actor.user_id) if by_other else None)
        await session.flush()
    return profile


async def _choose_avatar(session: AsyncSession, profile: Profile, media_id: str | None) -> bool:
    """Returns True when the visible avatar changed (a pending choice is not a change yet)."""
    if media_id is None:
        had = profile.avatar_media_id is not None
        profile.avatar_media_id = profile.avatar_variants = profile.avatar_pending_media_id = None
        return had
    if media_id == profile.avatar_media_id:
        profile.avatar_pending_media_id = None
        return False
    asset = await session.get(MediaAsset, media_id, populate_existing=True)
    if asset is None:
        profile.avatar_pending_media_id = media_id  # applied when quark.media.processed arrives
        return False
    if parse_user_id(asset.owner_id) != profile.user_id:
        raise InvalidInput("that media belongs to another user", field="avatar_media_id")
    profile.avatar_media_id = media_id
    profile.avatar_variants = dict(asset.variants)
    profile.avatar_pending_media_id = None
    return True


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


# --------------------------------------------------------------------------- lists (keyset pagination)


async def _edge_page(session: AsyncSession, model: Any, *, owner_col: str, other_col: str, owner_id: uuid.UUID,
                     kind: str, limit: int, cursor: str | None) -> tuple[list[Edge], str | None]:
    """Newest first by the edge's sequence number: a page boundary never moves when edges are added."""
    after = decode_seq_cursor(kind, cursor)
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
    next_cursor = encode_cursor(kind, rows[limit - 1][2]) if len(rows) > limit else None
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


async def list_activity(session: AsyncSession, viewer_id: uuid.UUID | None, *, limit: int, cursor: str | None,
                        kind: str | None = None) -> tuple[list[ActivityItem], str | None]:
    if kind is not None and kind not in ACTIVITY_KINDS:
        raise InvalidInput(f"unknown activity kind {kind!r}", field="kind")
    after = decode_seq_cursor("activity", cursor)
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
    next_cursor = encode_cursor("activity", rows[limit - 1][0].seq) if len(rows) > limit else None
    return items, next_cursor


async def purge_activity(session: AsyncSession, *, older_than: timedelta) -> int:
    async with session.begin():
        result = await session.execute(
            delete(Activity).where(Activity.created_at < now() - older_than).returning(Activity.seq)
        )
        return len(result.all())


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
    after = None if cursor is None else _text_param(_decode_cursor("search", cursor), "cursor")
    async with session.begin():
        rows = (await session.execute(search_statement(q, viewer_id=viewer.user_id, after=after,
                                                       limit=limit))).all()
    items = [p for p, _ in rows[:limit]]
    next_cursor = encode_cursor("search", rows[limit - 1][1]) if len(rows) > limit else None
    return items, next_cursor


async def admin_list(session: AsyncSession, *, q: str | None, suspended: bool | None, role: str | None,
                     verified: bool | None, limit: int, cursor: str | None) -> tuple[list[Profile], str | None]:
    """Newest accounts first; filters combine."""
    after = decode_seq_cursor("admin", cursor)
    stmt = select(Profile).where(_live())
    if q is not None and _text_param(q, "q").strip():
        pattern = func.lower(literal(_escape_like(q.strip().removeprefix("@")) + "%"))
        stmt = stmt.where(or_(func.lower(Profile.username).like(pattern, escape="\\"),
                              func.lower(Profile.display_name).like(pattern, escape="\\")))
    if suspended is not None:
        stmt = stmt.where(Profile.suspended.is_(suspended))
    if verified is not None:
        stmt = stmt.where(Profile.verified.is_(verified))
    if role is not None:
        stmt = stmt.where(Profile.roles.contains([_text_param(role, "role")]))
    if after is not None:
        stmt = stmt.where(Profile.seq < after)
    async with session.begin():
        rows = list((await session.scalars(stmt.order_by(Profile.seq.desc()).limit(limit + 1))).all())
    next_cursor = encode_cursor("admin", rows[limit - 1].seq) if len(rows) > limit else None
    return rows[:limit], next_cursor


async def set_suspended(session: AsyncSession, *, actor_id: str, username: str, suspended: bool,
                        reason: str | None) -> Profile:
    reason = (reason or "").strip() or None
    if reason is not None and _has_control(reason, allowed="\n"):
        raise InvalidInput("reason must not contain control characters", field="reason")
    async with session.begin():
        profile = await _by_username(session, username, lock=True)
        if suspended and str(profile.user_id) == actor_id:
            raise InvalidInput("you cannot suspend yourself", field="username")
        if profile.suspended == suspended:
            raise Conflict(f"{profile.username} is {'already' if suspended else 'not'} suspended")
        profile.suspended = suspended
        profile.suspended_reason = reason if suspended else None
        profile.suspended_at = now() if suspended else None
        profile.suspended_by = actor_id[:64] if suspended else None
        await add_event(session, UserSuspended(user_id=str(profile.user_id), suspended=suspended,
                                               reason=reason if suspended else None, actor_id=actor_id),
                        subject=str(profile.user_id))
        _log(session, profile.user_id, "suspended" if suspended else "unsuspended",
             reason=reason if suspended else None)
        await session.flush()
    return profile


# --------------------------------------------------------------------------- consumed events
# These run inside the consumer's transaction (one per batch), once per event id (the inbox);
# each is also safe when a *different* event says the same thing again.


async def _insert_profile(session: AsyncSession, *, user_id: uuid.UUID, username: str, display_name: str | None,
                          roles: list[str], created_at: datetime | None) -> Profile | None:
    """Create the profile unless one exists for this id (live or tombstone). Returns it only when created."""
    if await _by_id(session, user_id, include_deleted=True) is not None:
        return None
    clash = (await session.scalars(
        select(Profile).where(func.lower(Profile.username) == func.lower(literal(username)))
    )).first()
    if clash is not None:
        raise PermanentEventError(f"username {username!r} already belongs to user {clash.user_id}")
    values: dict[str, Any] = {
        "user_id": user_id, "username": username, "display_name": _clean_display_name(display_name),
        "roles": [r[:32] for r in roles[:16]],
    }
    if created_at is not None:
        values["created_at"] = created_at
    inserted = (await session.execute(
        pg_insert(Profile).values(**values).on_conflict_do_nothing(index_elements=[Profile.user_id])
        .returning(Profile.user_id)
    )).first()
    if inserted is None:  # a concurrent instance created it first
        return None
    profile = await _by_id(session, user_id)
    assert profile is not None
    await add_event(session, ProfileCreated(user_id=str(user_id), username=profile.username,
                                            display_name=profile.display_name), subject=str(user_id))
    return profile


async def _ensure_profile(session: AsyncSession, user_id: uuid.UUID, username: str | None) -> Profile | None:
    """The live profile, created from a later auth event if the registration was never seen (backfill)."""
    profile = await _by_id(session, user_id, include_deleted=True)
    if profile is None and username:
        try:
            profile = await _insert_profile(session, user_id=user_id, username=username, display_name=None,
                                            roles=[], created_at=None)
        except PermanentEventError:
            return None
    if profile is None or profile.deleted_at is not None:
        return None
    return profile


async def apply_user_registered(session: AsyncSession, event: AuthUserRegistered) -> None:
    profile = await _insert_profile(session, user_id=event.user_id, username=event.username,
                                    display_name=event.display_name, roles=event.roles, created_at=event.created_at)
    if profile is not None:
        _log(session, profile.user_id, "registered", at=event.created_at)


async def apply_user_verified(session: AsyncSession, event: AuthUserVerified) -> None:
    profile = await _ensure_profile(session, event.user_id, event.username)
    if profile is not None and not profile.verified:
        profile.verified = True
        _log(session, profile.user_id, "verified")


async def apply_user_logged_in(session: AsyncSession, event: AuthUserLoggedIn) -> None:
    profile = await _ensure_profile(session, event.user_id, event.username)
    if profile is None:
        return
    at = event.at or now()
    if profile.last_login_at is None or at > profile.last_login_at:
        profile.last_login_at = at
    _log(session, profile.user_id, "login", at=at, ip=(event.ip or None) and event.ip[:64],
         user_agent=(event.user_agent or None) and event.user_agent[:300], mfa=event.mfa)


async def apply_password_changed(session: AsyncSession, event: AuthPasswordChanged) -> None:
    profile = await _ensure_profile(session, event.user_id, None)
    if profile is not None:
        _log(session, profile.user_id, "password_changed", reason=event.reason)


async def apply_role_changed(session: AsyncSession, event: AuthRoleChanged) -> None:
    profile = await _ensure_profile(session, event.user_id, event.username)
    if profile is None:
        return
    roles = [r for r in profile.roles if r != event.role]
    if event.action == "granted":
        roles.append(event.role[:32])
    if roles != list(profile.roles):
        profile.roles = sorted(roles)
    _log(session, profile.user_id, "role_changed", role=event.role, action=event.action,
         actor_id=event.actor_id and event.actor_id[:64])


async def apply_user_deleted(session: AsyncSession, event: AuthUserDeleted) -> None:
    """Anonymise: the profile becomes a nameless tombstone; the user's graph and activity are deleted."""
    uid = event.user_id
    profile = await _by_id(session, uid, lock=True, include_deleted=True)
    if profile is not None and profile.deleted_at is not None:
        return  # already done (a second deletion event)
    tombstone = f"deleted-{uid.hex}"
    if profile is None:
        # Never seen: leave a tombstone so a late registration event cannot bring the account back.
        await session.execute(pg_insert(Profile).values(user_id=uid, username=tombstone, deleted_at=now())
                              .on_conflict_do_nothing(index_elements=[Profile.user_id]))
        await add_event(session, UserDeleted(user_id=str(uid)), subject=str(uid))
        return
    # Counters of the other side of every follow edge.
    await session.execute(
        update(Profile).where(Profile.user_id.in_(select(Follow.follower_id).where(Follow.followee_id == uid)))
        .values(following_count=Profile.following_count - 1).execution_options(synchronize_session=False)
    )
    await session.execute(
        update(Profile).where(Profile.user_id.in_(select(Follow.followee_id).where(Follow.follower_id == uid)))
        .values(followers_count=Profile.followers_count - 1).execution_options(synchronize_session=False)
    )
    await session.execute(delete(Follow).where(or_(Follow.follower_id == uid, Follow.followee_id == uid)))
    await session.execute(delete(FollowRequest).where(
        or_(FollowRequest.requester_id == uid, FollowRequest.target_id == uid)))
    await session.execute(delete(Block).where(or_(Block.blocker_id == uid, Block.blocked_id == uid)))
    await session.execute(delete(Mute).where(or_(Mute.muter_id == uid, Mute.muted_id == uid)))
    await session.execute(delete(Activity).where(Activity.user_id == uid))
    # Other users' history keeps the entry ("you followed someone") but no longer names this account.
    await session.execute(update(Activity).where(Activity.target_id == uid).values(target_id=None)
                          .execution_options(synchronize_session=False))
    await session.execute(delete(MediaAsset).where(MediaAsset.owner_id == str(uid)))
    profile = await _by_id(session, uid, lock=True, include_deleted=True)
    assert profile is not None
    profile.username = tombstone
    profile.display_name = None
    profile.bio = ""
    profile.links = []
    profile.locale = None
    profile.privacy = "public"
    profile.avatar_media_id = profile.avatar_variants = profile.avatar_pending_media_id = None
    profile.roles = []
    profile.verified = False
    profile.suspended = False
    profile.suspended_reason = profile.suspended_at = profile.suspended_by = None
    profile.followers_count = profile.following_count = 0
    profile.last_login_at = None
    profile.deleted_at = profile.updated_at = now()
    await add_event(session, UserDeleted(user_id=str(uid)), subject=str(uid))


def _clean_variants(variants: dict[str, str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for name, url in list(variants.items())[:MAX_VARIANTS]:
        if name and len(name) <= 32 and url and len(url) <= 2048 and not _has_control(url):
            out[name] = url
    return out


async def apply_media_processed(session: AsyncSession, event: MediaProcessed) -> None:
    owner = parse_user_id(event.owner_id)
    if owner is not None:
        # Wait for an avatar choice in flight (PATCH /me locks the profile, finds no asset yet and marks it
        # pending): after this lock the query below sees that choice, and a later PATCH sees our asset row.
        await session.execute(select(Profile.user_id).where(Profile.user_id == owner).with_for_update())
    waiting = list((await session.scalars(
        select(Profile).where(_live(), or_(Profile.avatar_pending_media_id == event.media_id,
                                           Profile.avatar_media_id == event.media_id))
        .with_for_update().execution_options(populate_existing=True)
    )).all())
    if not waiting and (event.purpose not in AVATAR_PURPOSES or owner is None):
        return  # not an avatar and nobody is waiting for it
    variants = _clean_variants(event.variants)
    await session.execute(
        pg_insert(MediaAsset).values(media_id=event.media_id, owner_id=event.owner_id, variants=variants,
                                     width=event.width, height=event.height, processed_at=now())
        .on_conflict_do_update(index_elements=[MediaAsset.media_id],
                               set_={"owner_id": event.owner_id, "variants": variants, "width": event.width,
                                     "height": event.height, "processed_at": now()})
    )
    for profile in waiting:
        if profile.user_id != owner:
            continue  # someone else's media can never become this profile's avatar
        if profile.avatar_media_id == event.media_id and profile.avatar_variants == variants:
            continue
        profile.avatar_media_id = event.media_id
        profile.avatar_variants = variants
        if profile.avatar_pending_media_id == event.media_id:
            profile.avatar_pending_media_id = None
        profile.updated_at = now()
        await _publish_profile_updated(session, profile, ["avatar"])
        _log(session, profile.user_id, "avatar_updated", media_id=event.media_id)


async def apply_media_deleted(session: AsyncSession, event: MediaDeleted) -> None:
    await session.execute(delete(MediaAsset).where(MediaAsset.media_id == event.media_id))
    affected = (await session.scalars(
        select(Profile).where(_live(), or_(Profile.avatar_pending_media_id == event.media_id,
                                           Profile.avatar_media_id == event.media_id))
        .with_for_update().execution_options(populate_existing=True)
    )).all()
    for profile in affected:
        if profile.avatar_pending_media_id == event.media_id:
            profile.avatar_pending_media_id = None
        if profile.avatar_media_id == event.media_id:
            profile.avatar_media_id = profile.avatar_variants = None
            profile.updated_at = now()
            await _publish_profile_updated(session, profile, ["avatar"])
            _log(session, profile.user_id, "avatar_updated", media_id=None)
