"""Response models, the events the media service publishes, and its copies of consumed events.

Published events are registered with ``@event_type``; their field names are a contract with the
user and blog services (`MediaProcessed` / `MediaDeleted` there). Consumed events are plain models
parsed with ``extra="ignore"`` and never registered: their producers register those names.
"""

import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from quark_sdk.events import EventPayload, event_type
from quark_sdk.pagination import Page

Status = Literal["uploaded", "processing", "ready", "failed"]

# --------------------------------------------------------------------------- responses


class VariantOut(BaseModel):
    url: str
    width: int
    height: int
    size: int
    content_type: str


class MediaOut(BaseModel):
    id: str
    owner_id: str
    purpose: str | None
    status: Status
    mime_type: str
    size: int
    width: int | None
    height: int | None
    blurhash: str | None
    dominant_color: str | None
    variants: dict[str, VariantOut]
    attached: bool
    created_at: datetime
    updated_at: datetime
    filename: str | None = None  # the owner's own label; only shown to the owner or an admin
    error: str | None = None


class MediaPage(Page[MediaOut]):
    """One page of the owner's media, newest first."""


class UsageOut(BaseModel):
    count: int
    bytes: int
    max_count: int | None
    max_bytes: int | None


# --------------------------------------------------------------------------- events published


@event_type("quark.media.uploaded")
class MediaUploaded(EventPayload):
    """An upload passed the content checks and was stored; processing follows."""

    media_id: str
    owner_id: str
    purpose: str | None
    mime_type: str
    size: int


@event_type("quark.media.processed")
class MediaProcessed(EventPayload):
    """Variants are ready. `variants` maps thumb/medium/original to URLs (or paths) clients can fetch."""

    media_id: str
    owner_id: str
    purpose: str | None
    variants: dict[str, str]
    width: int
    height: int
    mime_type: str = "image/webp"
    blurhash: str | None = None
    dominant_color: str | None = None


@event_type("quark.media.failed")
class MediaFailed(EventPayload):
    """Processing gave up; the upload's bytes are gone and the media will not become ready."""

    media_id: str
    owner_id: str
    purpose: str | None
    reason: str


@event_type("quark.media.deleted")
class MediaDeleted(EventPayload):
    """A media item and its objects were removed (owner, admin, orphan cleanup or account deletion)."""

    media_id: str
    owner_id: str
    reason: Literal["owner", "admin", "orphan", "account_deleted", "moderation"] = "owner"


# --------------------------------------------------------------------------- events consumed (never registered)


class ReportCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(min_length=1, max_length=1000)


class ReportOut(BaseModel):
    id: uuid.UUID
    media_id: uuid.UUID
    status: str
    created_at: datetime


@event_type("quark.media.reported")
class MediaReported(EventPayload):
    """Someone reported an uploaded file to the moderation queue."""

    report_id: str
    media_id: str
    owner_id: str
    reporter_id: str
    reason: str
    content_type: str
    url: str | None


class _Consumed(BaseModel):
    model_config = ConfigDict(extra="ignore")


class AuthUserDeleted(_Consumed):
    user_id: uuid.UUID


class PostMedia(_Consumed):
    """quark.post.published / quark.post.updated: the media ids a post uses."""

    post_id: str = Field(max_length=200)
    author_id: str = Field(max_length=64)
    media_ids: list[str] = Field(default_factory=list, max_length=100)


class ProfileAvatar(_Consumed):
    media_id: str = Field(max_length=64)


class ProfileUpdated(_Consumed):
    user_id: str = Field(max_length=64)
    avatar: ProfileAvatar | None = None


class ModerationDecided(_Consumed):
    """`quark.moderation.decided`: media applies `delete` on its files and closes the reports on them."""

    decision_id: str = Field(min_length=1, max_length=64)
    kind: str = Field(min_length=1, max_length=32)
    target_id: str = Field(min_length=1, max_length=64)
    module: str = Field(min_length=1, max_length=32)
    action: Literal["dismiss", "hide", "delete", "warn", "suspend"]
