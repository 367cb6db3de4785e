"""Reading and editing profiles (owner or admin), and choosing an avatar."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from quark_sdk.errors import InvalidInput, PermissionDenied
from quark_user.common import (
    ProfileView,
    Viewer,
    _by_username,
    _log,
    _me,
    _publish_profile_updated,
    _relationship,
    now,
    parse_user_id,
    retry_transaction,
)
from quark_user.follows import _approve_all_requests
from quark_user.models import FollowRequest, MediaAsset, Profile
from quark_user.validation import (
    Limits,
    validate_update,
)

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
