"""Request/response models, the events the user service publishes, and its copies of consumed events.

Published events are registered with ``@event_type`` (they feed the AsyncAPI catalogue).
Consumed events are plain Pydantic models parsed with ``event.payload(Model)`` and never
registered: their producers (auth, media) register the same type names, and in the embedded
process all modules share one catalogue.
"""

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from quark_sdk.events import EventPayload, event_type

Privacy = Literal["public", "followers"]

# --------------------------------------------------------------------------- requests


class ProfileUpdate(BaseModel):
    """PATCH body: only the fields present change; `null` clears a clearable field.

    The hard caps here only bound parsing; the configured limits (settings) are checked by the service.
    """

    model_config = ConfigDict(extra="forbid")

    display_name: str | None = Field(default=None, max_length=1000)
    bio: str | None = Field(default=None, max_length=20_000)
    links: list[str] | None = Field(default=None, max_length=100)
    locale: str | None = Field(default=None, max_length=100)
    privacy: Privacy | None = None
    avatar_media_id: str | None = Field(default=None, max_length=200)


MAX_SUSPENSION_HOURS = 365 * 24  # as the moderation module's max_suspension_days


class SuspendRequest(BaseModel):
    """No `duration_hours` and no `until`: suspended until reinstated. Either one: lifted automatically."""

    model_config = ConfigDict(extra="forbid")

    reason: str | None = Field(default=None, max_length=500)
    duration_hours: int | None = Field(default=None, ge=1, le=MAX_SUSPENSION_HOURS)
    until: AwareDatetime | None = None

    @model_validator(mode="after")
    def _one_end(self) -> "SuspendRequest":
        if self.duration_hours is not None and self.until is not None:
            raise ValueError("give duration_hours or until, not both")
        return self


# --------------------------------------------------------------------------- responses


class AvatarOut(BaseModel):
    media_id: str
    variants: dict[str, str]


class Relationship(BaseModel):
    """How the caller relates to the profile they are looking at."""

    following: bool = False
    requested: bool = False
    followed_by: bool = False
    blocking: bool = False
    blocked_by: bool = False
    muting: bool = False


class ProfileOut(BaseModel):
    """A profile as the caller may see it: `restricted` views carry no bio, links or locale."""

    user_id: uuid.UUID
    username: str
    display_name: str | None
    avatar: AvatarOut | None
    privacy: Privacy
    followers_count: int
    following_count: int
    created_at: datetime
    suspended: bool
    restricted: bool
    bio: str | None = None
    links: list[str] | None = None
    locale: str | None = None
    relationship: Relationship | None = None


class MeOut(ProfileOut):
    """The caller's own profile, with what only they (and admins) see."""

    avatar_pending_media_id: str | None
    verified: bool
    roles: list[str]
    updated_at: datetime
    last_login_at: datetime | None


class AdminUserOut(MeOut):
    suspended_reason: str | None
    suspended_at: datetime | None
    suspended_by: str | None
    suspended_until: datetime | None


class UserSummary(BaseModel):
    user_id: uuid.UUID
    username: str
    display_name: str | None
    avatar: AvatarOut | None
    privacy: Privacy


class EdgeOut(BaseModel):
    """An item of a followers / following / requests / blocks / mutes list."""

    user: UserSummary
    since: datetime


class EdgePage(BaseModel):
    items: list[EdgeOut]
    next_cursor: str | None


class SummaryPage(BaseModel):
    items: list[UserSummary]
    next_cursor: str | None


class AdminUserPage(BaseModel):
    items: list[AdminUserOut]
    next_cursor: str | None


class ActivityTarget(BaseModel):
    user_id: uuid.UUID
    username: str


class ActivityOut(BaseModel):
    id: int
    kind: str
    at: datetime
    target: ActivityTarget | None
    data: dict[str, Any]


class ActivityPage(BaseModel):
    items: list[ActivityOut]
    next_cursor: str | None


class FollowResult(BaseModel):
    status: Literal["following", "requested"]


# --------------------------------------------------------------------------- events published


class UserAvatar(BaseModel):
    media_id: str
    variants: dict[str, str]


@event_type("quark.user.profile_created")
class ProfileCreated(EventPayload):
    """A profile was created for a newly registered account."""

    user_id: str
    username: str
    display_name: str | None


@event_type("quark.user.profile_updated")
class ProfileUpdated(EventPayload):
    """A profile changed (owner or admin edit, or a processed avatar); carries the full public state."""

    user_id: str
    username: str
    display_name: str | None
    bio: str
    avatar: UserAvatar | None
    privacy: Privacy
    links: list[str] = Field(default_factory=list)
    locale: str | None = None
    changed: list[str] = Field(default_factory=list)


@event_type("quark.user.followed")
class UserFollowed(EventPayload):
    """`follower` now follows `followee` (directly, or by an approved follow request)."""

    follower_id: str
    follower_username: str
    followee_id: str
    followee_username: str
    at: datetime


@event_type("quark.user.unfollowed")
class UserUnfollowed(EventPayload):
    """The follow edge is gone (unfollow, follower removed, or a block between the two)."""

    follower_id: str
    followee_id: str
    at: datetime


@event_type("quark.user.follow_requested")
class FollowRequested(EventPayload):
    """`follower` asked to follow a followers-only account; the followee approves or rejects."""

    follower_id: str
    followee_id: str
    at: datetime


@event_type("quark.user.blocked")
class UserBlocked(EventPayload):
    """`blocker` blocked `blocked`: no follows either way, and `blocked` may not follow or message `blocker`."""

    blocker_id: str
    blocked_id: str
    at: datetime


@event_type("quark.user.unblocked")
class UserUnblocked(EventPayload):
    """The block is lifted (follows removed by it are not restored)."""

    blocker_id: str
    blocked_id: str
    at: datetime


@event_type("quark.user.muted")
class UserMuted(EventPayload):
    """`muter` no longer wants to see `muted`'s content; `muted` is not told and nothing else changes."""

    muter_id: str
    muted_id: str
    at: datetime


@event_type("quark.user.unmuted")
class UserUnmuted(EventPayload):
    """The mute is lifted."""

    muter_id: str
    muted_id: str
    at: datetime


class ReportCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(min_length=1, max_length=1000)


class ReportOut(BaseModel):
    id: uuid.UUID
    user_id: uuid.UUID
    status: str
    created_at: datetime


@event_type("quark.user.profile_reported")
class ProfileReported(EventPayload):
    """Someone reported a profile to the moderation queue (with what the profile showed then)."""

    report_id: str
    user_id: str
    username: str
    display_name: str | None
    bio: str
    reporter_id: str
    reason: str


@event_type("quark.user.suspended")
class UserSuspended(EventPayload):
    """An admin suspended (`suspended: true`) or reinstated (`false`) an account."""

    user_id: str
    suspended: bool
    reason: str | None
    actor_id: str


@event_type("quark.user.deleted")
class UserDeleted(EventPayload):
    """The profile of a deleted account was anonymised; its follows, requests, blocks, mutes and activity are gone."""

    user_id: str


# --------------------------------------------------------------------------- events consumed (never registered)


def _storable(value: Any) -> bool:
    """PostgreSQL text and jsonb cannot hold NUL, and lone surrogates cannot be encoded at all."""
    if isinstance(value, str):
        return "\x00" not in value and not any("\ud800" <= ch <= "\udfff" for ch in value)
    if isinstance(value, dict):
        return all(_storable(k) and _storable(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return all(_storable(v) for v in value)
    return True


class _Consumed(BaseModel):
    model_config = ConfigDict(extra="ignore")

    @model_validator(mode="after")
    def _no_unstorable_text(self) -> "_Consumed":
        if not _storable(self.model_dump()):
            raise ValueError("payload contains NUL characters or lone surrogates")
        return self


class AuthUserRegistered(_Consumed):
    user_id: uuid.UUID
    username: str = Field(min_length=1, max_length=64)
    email: str | None = None
    display_name: str | None = None
    roles: list[str] = Field(default_factory=list)
    created_at: datetime | None = None


class AuthUserVerified(_Consumed):
    user_id: uuid.UUID
    username: str | None = Field(default=None, min_length=1, max_length=64)


class AuthUserLoggedIn(_Consumed):
    user_id: uuid.UUID
    username: str | None = Field(default=None, min_length=1, max_length=64)
    ip: str | None = None
    user_agent: str | None = None
    at: datetime | None = None
    mfa: bool | None = None


class AuthPasswordChanged(_Consumed):
    user_id: uuid.UUID
    reason: str | None = Field(default=None, max_length=32)


class AuthRoleChanged(_Consumed):
    user_id: uuid.UUID
    username: str | None = Field(default=None, min_length=1, max_length=64)
    role: str = Field(min_length=1, max_length=64)
    action: Literal["granted", "revoked"]
    actor_id: str | None = None


class AuthUserDeleted(_Consumed):
    user_id: uuid.UUID
    username: str | None = None


class MediaProcessed(_Consumed):
    media_id: str = Field(min_length=1, max_length=64)
    owner_id: str = Field(min_length=1, max_length=64)
    purpose: str | None = None
    variants: dict[str, str] = Field(default_factory=dict)
    width: int | None = None
    height: int | None = None


class MediaDeleted(_Consumed):
    media_id: str = Field(min_length=1, max_length=64)
    owner_id: str | None = None


class ModerationDecided(_Consumed):
    """`quark.moderation.decided`: the user module applies the sanctions on the author (warn, suspend)."""

    decision_id: str = Field(min_length=1, max_length=64)
    kind: str = Field(default="", max_length=32)
    target_id: str = Field(default="", max_length=64)
    action: Literal["dismiss", "hide", "delete", "warn", "suspend"]
    author_id: str | None = Field(default=None, max_length=64)
    reason: str = Field(default="", max_length=1000)
    moderator_id: str = Field(min_length=1, max_length=64)
    until: datetime | None = None
