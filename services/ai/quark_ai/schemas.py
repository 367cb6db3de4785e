"""Request/response models, the events the AI service publishes (registered) and the ones it consumes (plain).

Consumed events are parsed with this service's own plain models, never registered with
``@event_type``: their producers register those names.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from quark_sdk.events import EventPayload, event_type
from quark_sdk.pagination import Page

Tone = Literal["neutral", "friendly", "formal", "playful", "technical", "persuasive"]
Length = Literal["short", "medium", "long"]
DraftStatus = Literal["pending", "approved", "rejected"]
Agent = Literal["moderation", "tagging", "recommendations", "draft", "assist"]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --------------------------------------------------------------------------- requests


class DraftCreate(_Body):
    # The schema's cap is the absolute one; the configured limit (settings.max_topic_chars, default 500) is
    # checked by the service: 422 `prompt-too-long` naming the limit.
    topic: str = Field(min_length=1, max_length=20_000)
    tone: Tone = "neutral"
    length: Length = "medium"


class DraftEdit(_Body):
    title: str | None = Field(default=None, min_length=1, max_length=200)
    body: str | None = Field(default=None, min_length=1)
    tags: list[str] | None = Field(default=None, max_length=10)


class DraftApprove(DraftEdit):
    """Approve, optionally with last edits; the post is created in the blog as a draft, never published."""


class AssistRequest(_Body):
    text: str = Field(min_length=1)


class ReviewRequest(_Body):
    decision: Literal["upheld", "overruled"]
    reason: str | None = Field(default=None, max_length=500)
    # With `overruled` on a flagged item: also restore it in the blog (with the moderator's own token).
    restore: bool = True


# --------------------------------------------------------------------------- responses


class RunOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    agent: str
    input_type: str
    input_id: str | None
    event_id: str | None
    user_id: str | None
    provider: str
    model: str
    latency_ms: float
    outcome: str
    detail: dict[str, Any]
    error: str | None
    created_at: datetime


class RunPage(Page[RunOut]):
    """One page of runs."""


class ModerationOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    run_id: uuid.UUID
    target_type: str
    target_id: str
    author_id: str | None
    score: float
    classifier_score: float
    labels: list[str]
    rules: list[str]
    reason: str
    flagged: bool
    preview: str
    decision: str | None
    decided_by: str | None
    decided_at: datetime | None
    decision_reason: str | None
    created_at: datetime
    blog_restore: str | None = None  # only in the answer to a review: restored | not needed | failed: …


class ModerationPage(Page[ModerationOut]):
    """One page of moderations."""


class DraftOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    status: DraftStatus
    topic: str
    tone: str
    length: str
    title: str
    body: str
    tags: list[str]
    generated: bool
    notice: str | None
    warnings: list[str]
    provider: str
    model: str
    run_id: uuid.UUID
    edits: int
    blog_post_id: str | None
    decided_at: datetime | None
    created_at: datetime
    updated_at: datetime


class DraftPage(Page[DraftOut]):
    """One page of drafts."""


class RecommendationOut(BaseModel):
    post_id: str
    author_id: str
    title: str
    slug: str
    excerpt: str
    tags: list[str]
    published_at: datetime
    score: float
    similarity: float
    reasons: list[str]


class RecommendationPage(Page[RecommendationOut]):
    run_id: uuid.UUID


class AssistOut(BaseModel):
    title: str
    summary: str
    tags: list[str]
    provider: str
    model: str
    notice: str


class StatusOut(BaseModel):
    provider: str
    model: str
    generates: bool
    breaker: str
    notice: str | None = None
    moderation_model: str
    moderation_threshold: float


# --------------------------------------------------------------------------- oversight (admins, the console)


class ThresholdsIn(_Body):
    """New moderation thresholds: the flagging threshold and, optionally, the score of named rules."""

    threshold: float = Field(gt=0.0, le=1.0)
    rule_scores: dict[str, float] = Field(default_factory=dict, max_length=64)
    reason: str | None = Field(default=None, max_length=500)


class RuleOut(BaseModel):
    name: str
    label: str
    score: float
    default_score: float


class ThresholdsOut(BaseModel):
    threshold: float
    default_threshold: float
    rules: list[RuleOut]
    updated_by: str | None = None
    updated_at: datetime | None = None
    reason: str | None = None


class AdminDraftOut(DraftOut):
    user_id: str


class AdminDraftPage(Page[AdminDraftOut]):
    """One page of everyone's drafts."""


class UsageRow(BaseModel):
    agent: str
    provider: str
    outcome: str
    runs: int
    avg_latency_ms: float
    max_latency_ms: float


class QuotaOut(BaseModel):
    name: str
    limit: int
    window_seconds: float


class UsageOut(BaseModel):
    """The AI's work over a window: runs (its cost: every run is compute, an LLM run may be money), quotas,
    drafts by state."""

    since: datetime
    rows: list[UsageRow]
    quotas: list[QuotaOut]
    drafts: dict[str, int]
    provider: str
    model: str


# --------------------------------------------------------------------------- events published


@event_type("quark.ai.moderation_flagged")
class ModerationFlagged(EventPayload):
    """The moderation agent scored a post or comment above the threshold: blog hides it pending review and the
    moderation queue files it (`author_id` and `preview`, the start of the judged text, are what it shows)."""

    target_type: Literal["post", "comment"]
    target_id: str
    score: float
    labels: list[str]
    reason: str
    run_id: str
    author_id: str | None = None
    preview: str | None = None


@event_type("quark.ai.moderation_reviewed")
class ModerationReviewed(EventPayload):
    """A moderator upheld or overruled an automatic verdict (the overrule record)."""

    result_id: str
    run_id: str
    target_type: Literal["post", "comment"]
    target_id: str
    flagged: bool
    decision: Literal["upheld", "overruled"]
    moderator_id: str
    reason: str | None


@event_type("quark.ai.suggestion_generated")
class SuggestionGenerated(EventPayload):
    """Suggestions for a person: tags for their post, posts they may like, or posts related to a post."""

    kind: Literal["tags", "recommendations", "related_posts"]
    user_id: str | None  # who the suggestion is for (the post's author, or the reader)
    target_type: Literal["post", "user"]
    target_id: str
    items: list[str]
    scores: list[float] = Field(default_factory=list)
    run_id: str


@event_type("quark.ai.draft_approved")
class DraftApproved(EventPayload):
    """The author approved an AI draft; it now exists in the blog as a draft post (not published)."""

    draft_id: str
    user_id: str
    blog_post_id: str
    provider: str
    model: str


# --------------------------------------------------------------------------- events consumed (never registered)


class _Consumed(BaseModel):
    model_config = ConfigDict(extra="ignore")


class PostContent(_Consumed):
    """quark.post.published / quark.post.updated: blog puts the plain text in `body_text`."""

    post_id: str = Field(min_length=1, max_length=64)
    author_id: str = Field(min_length=1, max_length=64)
    title: str = Field(default="", max_length=1000)
    slug: str = ""
    excerpt: str = ""
    body_text: str = ""
    tags: list[str] = Field(default_factory=list)
    visibility: str = "public"
    published_at: datetime | None = None
    updated_at: datetime | None = None


class PostRef(_Consumed):
    post_id: str = Field(min_length=1, max_length=64)


class CommentContent(_Consumed):
    comment_id: str = Field(min_length=1, max_length=64)
    post_id: str = Field(min_length=1, max_length=64)
    author_id: str = Field(min_length=1, max_length=64)
    body_text: str = ""


class PostReacted(_Consumed):
    post_id: str = Field(min_length=1, max_length=64)
    user_id: str = Field(min_length=1, max_length=64)
    kind: str = Field(min_length=1, max_length=32)
    action: Literal["added", "removed"]


class FollowChanged(_Consumed):
    follower_id: str = Field(min_length=1, max_length=64)
    followee_id: str = Field(min_length=1, max_length=64)


class UserDeleted(_Consumed):
    user_id: str = Field(min_length=1, max_length=64)


class BlockChanged(_Consumed):
    """quark.user.blocked / unblocked."""

    blocker_id: str = Field(min_length=1, max_length=64)
    blocked_id: str = Field(min_length=1, max_length=64)


class MuteChanged(_Consumed):
    """quark.user.muted / unmuted."""

    muter_id: str = Field(min_length=1, max_length=64)
    muted_id: str = Field(min_length=1, max_length=64)


class ProfileChanged(_Consumed):
    """quark.user.profile_updated: only the privacy matters here (it carries the full public state)."""

    user_id: str = Field(min_length=1, max_length=64)
    privacy: Literal["public", "followers"]


class SuspensionChanged(_Consumed):
    """quark.user.suspended: `suspended: false` reinstates."""

    user_id: str = Field(min_length=1, max_length=64)
    suspended: bool


class QueueDecision(_Consumed):
    """`quark.moderation.decided`: the moderation queue's decision; `run_ids` are the flags it reviewed."""

    decision_id: str
    kind: str
    target_id: str
    action: Literal["dismiss", "hide", "delete", "warn", "suspend"]
    reason: str = ""
    moderator_id: str
    run_ids: list[str] = Field(default_factory=list, max_length=100)
@event_type("quark.ai.thresholds_changed")
class ThresholdsChanged(EventPayload):
    """An admin changed the moderation thresholds (audit trail: who, why, before and after)."""

    actor_id: str
    reason: str | None
    threshold: float
    previous_threshold: float
    rule_scores: dict[str, float]
    previous_rule_scores: dict[str, float]
