"""What other modules tell the user service (auth and media events), applied inside the consumer's transaction.

Each runs once per event id (the inbox) and is also safe when a *different* event says the same thing again.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, literal, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from quark_sdk.events import PermanentEventError
from quark_sdk.outbox import add_event
from quark_user.common import (
    AVATAR_PURPOSES,
    MAX_VARIANTS,
    _by_id,
    _live,
    _log,
    _publish_profile_updated,
    now,
    parse_user_id,
)
from quark_user.models import Activity, Block, Follow, FollowRequest, MediaAsset, Mute, Profile
from quark_user.schemas import (
    AuthPasswordChanged,
    AuthRoleChanged,
    AuthUserDeleted,
    AuthUserLoggedIn,
    AuthUserRegistered,
    AuthUserVerified,
    MediaDeleted,
    MediaProcessed,
    ProfileCreated,
    UserDeleted,
)
from quark_user.validation import (
    _clean_display_name,
    _has_control,
)

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
    profile.suspended_reason = profile.suspended_at = profile.suspended_by = profile.suspended_until = None
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
