"""Request/response models of the moderation API, the event it publishes and the (tolerant) readers of the
events it consumes."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from quark_sdk.events import EventPayload, event_type
from quark_sdk.pagination import Page

Kind = Literal["post", "comment", "chat_message", "media", "profile"]
State = Literal["open", "dismissed", "actioned"]
Source = Literal["user", "ai"]
Action = Literal["dismiss", "hide", "delete", "warn", "suspend"]

# What each kind of target can undergo: the owning module applies it through its own service functions.
ACTIONS_BY_KIND: dict[str, tuple[str, ...]] = {
    "post": ("dismiss", "hide", "delete", "warn", "suspend"),
    "comment": ("dismiss", "hide", "delete", "warn", "suspend"),
    "chat_message": ("dismiss", "hide", "delete", "warn", "suspend"),
    "media": ("dismiss", "delete", "warn", "suspend"),
    "profile": ("dismiss", "warn", "suspend"),
}
MODULE_OF_KIND = {"post": "blog", "comment": "blog", "chat_message": "messaging", "media": "media",
                  "profile": "user"}


# --------------------------------------------------------------------------- published


@event_type("quark.moderation.decided")
class ModerationDecided(EventPayload):
    """A moderator decided a case. The module owning the target (`module`) applies `action` through its own
    service functions (hide/delete the content); `warn` and `suspend` are applied by the user module to
    `author_id` (`suspend` for `duration_seconds`, until `until`). Every module closes its own open reports
    on the target. Consumers are idempotent by `decision_id`."""

    decision_id: str
    case_id: str
    kind: Kind
    target_id: str
    module: str
    author_id: str | None
    action: Action
    reason: str
    moderator_id: str
    duration_seconds: int | None = None
    until: datetime | None = None
    flagged_by_ai: bool = False
    run_ids: list[str] = Field(default_factory=list)  # the AI runs whose flags this decision reviews
    decided_at: datetime


# --------------------------------------------------------------------------- consumed (never registered)


class Consumed(BaseModel):
    """Unknown fields are ignored (producers add fields); a payload that does not fit is dead-lettered."""

    model_config = ConfigDict(extra="ignore")


ShortId = Field(min_length=1, max_length=64)


class PostReportedIn(Consumed):
    """`quark.post.reported` (blog): a user reported a post or a comment."""

    report_id: str = Field(min_length=1, max_length=128)
    target_type: Literal["post", "comment"]
    target_id: str = ShortId
    reporter_id: str = ShortId
    reason: str = Field(max_length=1000)
    author_id: str | None = Field(default=None, max_length=64)
    post_id: str | None = Field(default=None, max_length=64)
    title: str | None = Field(default=None, max_length=500)
    excerpt: str | None = Field(default=None, max_length=2000)


class FlaggedIn(Consumed):
    """`quark.ai.moderation_flagged`: the classifier scored a post or comment above the threshold."""

    target_type: Literal["post", "comment"]
    target_id: str = ShortId
    score: float = 0.0
    labels: list[str] = Field(default_factory=list, max_length=50)
    reason: str | None = Field(default=None, max_length=1000)
    run_id: str = Field(min_length=1, max_length=128)
    author_id: str | None = Field(default=None, max_length=64)
    preview: str | None = Field(default=None, max_length=2000)


class ThreadLine(Consumed):
    message_id: str = Field(min_length=1, max_length=64)
    sender_id: str | None = Field(default=None, max_length=64)
    sender_username: str | None = Field(default=None, max_length=64)
    body: str = Field(default="", max_length=8000)
    created_at: datetime
    reported: bool = False


class MessageReportedIn(Consumed):
    """`quark.message.reported` (messaging, readable by moderation only): a participant reported a message;
    `thread` is the message and its few neighbours — nothing else of the chat."""

    report_id: str = Field(min_length=1, max_length=128)
    chat_id: str = ShortId
    message_id: str = ShortId
    author_id: str | None = Field(default=None, max_length=64)
    reporter_id: str = ShortId
    reason: str = Field(max_length=1000)
    thread: list[ThreadLine] = Field(default_factory=list, max_length=50)


class ProfileReportedIn(Consumed):
    """`quark.user.profile_reported` (user): someone reported a profile."""

    report_id: str = Field(min_length=1, max_length=128)
    user_id: str = ShortId
    username: str | None = Field(default=None, max_length=64)
    display_name: str | None = Field(default=None, max_length=200)
    bio: str | None = Field(default=None, max_length=4000)
    reporter_id: str = ShortId
    reason: str = Field(max_length=1000)


class MediaReportedIn(Consumed):
    """`quark.media.reported` (media): someone reported an uploaded file."""

    report_id: str = Field(min_length=1, max_length=128)
    media_id: str = ShortId
    owner_id: str | None = Field(default=None, max_length=64)
    reporter_id: str = ShortId
    reason: str = Field(max_length=1000)
    content_type: str | None = Field(default=None, max_length=200)
    url: str | None = Field(default=None, max_length=2048)


class AdminActionIn(Consumed):
    """Any admin action another module reports for the audit log: it names its `actor_id`."""

    model_config = ConfigDict(extra="allow")

    actor_id: str | None = Field(default=None, max_length=128)
    user_id: str | None = Field(default=None, max_length=128)
    reason: str | None = Field(default=None, max_length=2000)


# --------------------------------------------------------------------------- API


class SignalOut(BaseModel):
    id: uuid.UUID
    source: Source
    reporter_id: str | None
    reason: str
    score: float | None
    labels: list[str]
    created_at: datetime


class DecisionOut(BaseModel):
    id: uuid.UUID
    case_id: uuid.UUID
    action: Action
    reason: str
    moderator_id: str
    duration_seconds: int | None
    until: datetime | None
    created_at: datetime


class CaseSummary(BaseModel):
    id: uuid.UUID
    kind: Kind
    target_id: str
    module: str
    author_id: str | None
    state: State
    reports: int
    flags: int
    max_score: float | None
    preview: str
    created_at: datetime
    updated_at: datetime
    closed_at: datetime | None


class CaseOut(CaseSummary):
    context: dict[str, Any]
    signals: list[SignalOut]
    decisions: list[DecisionOut]
    allowed_actions: list[Action]


class CasePage(Page[CaseSummary]):
    pass


class DecisionRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    action: Action
    reason: str = Field(min_length=1, max_length=1000, description="why; shown in the audit log")
    duration_hours: int | None = Field(default=None, ge=1, le=24 * 3650,
                                       description="for `suspend`: how long (hours)")
    decision_id: uuid.UUID | None = Field(default=None, description="client-chosen id: a replay returns the first")


class AuditOut(BaseModel):
    seq: int
    at: datetime
    actor_id: str | None
    action: str
    module: str
    target_kind: str | None
    target_id: str | None
    reason: str | None
    details: dict[str, Any]


class AuditPage(Page[AuditOut]):
    pass
