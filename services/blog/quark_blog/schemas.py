"""Request/response models, the events blog publishes (registered) and the ones it consumes (plain models).

Consumed events are parsed with their own plain Pydantic models, never registered with
``@event_type``: their producers register those names, and in the embedded process every
module shares one catalogue.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from quark_blog.common import all_storable
from quark_sdk.events import EventPayload, event_type

Visibility = Literal["public", "followers", "private"]
BodyFormatField = Literal["markdown", "html"]
PostStatus = Literal["draft", "scheduled", "published"]
REACTION_KINDS: dict[str, str] = {
    "like": "👍",
    "love": "❤️",
    "laugh": "😂",
    "wow": "😮",
    "sad": "😢",
    "angry": "😠",
    "celebrate": "🎉",
}
ReactionKind = Literal["like", "love", "laugh", "wow", "sad", "angry", "celebrate"]

SLUG_PATTERN = r"^[a-z0-9]+(?:-[a-z0-9]+)*$"
MEDIA_ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"


def in_utc(value: datetime) -> datetime:
    """The time in UTC; a time that has no UTC equivalent (past year 9999 or before year 1) is invalid."""
    try:
        return value.astimezone(UTC)
    except (OverflowError, ValueError):
        raise ValueError("time out of range") from None


UtcTime = Annotated[AwareDatetime, AfterValidator(in_utc)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _no_unstorable_text(cls, data: Any) -> Any:
        """PostgreSQL text cannot hold NUL and lone surrogates cannot be encoded: refuse them anywhere (422)."""
        if not all_storable(data):
            raise ValueError("text contains NUL characters or lone surrogates")
        return data


# --------------------------------------------------------------------------- requests


class PostCreate(_Body):
    title: str = Field(min_length=1, max_length=200)
    # No max_length here: an over-long body is a 413 (checked against settings.max_body_chars), not a 422.
    body: str = Field(min_length=1)
    format: BodyFormatField = "markdown"
    excerpt: str | None = Field(default=None, max_length=500)
    slug: str | None = Field(default=None, max_length=100, pattern=SLUG_PATTERN)
    tags: list[str] = Field(default_factory=list, max_length=10)
    category: str | None = Field(default=None, max_length=64)
    media_ids: list[str] = Field(default_factory=list, max_length=20)
    visibility: Visibility = "public"
    publish: bool = False
    scheduled_at: UtcTime | None = None


class PostUpdate(_Body):
    """PATCH: only the fields present change; `excerpt: null` goes back to the derived excerpt."""

    title: str | None = Field(default=None, min_length=1, max_length=200)
    body: str | None = Field(default=None, min_length=1)
    format: BodyFormatField | None = None
    excerpt: str | None = Field(default=None, max_length=500)
    slug: str | None = Field(default=None, max_length=100, pattern=SLUG_PATTERN)
    tags: list[str] | None = Field(default=None, max_length=10)
    category: str | None = Field(default=None, max_length=64)
    media_ids: list[str] | None = Field(default=None, max_length=20)
    visibility: Visibility | None = None


class PreviewRequest(_Body):
    """What the editor shows beside the source: rendered and sanitised exactly as a saved post would be."""

    # The request cap (GuardedRoute) bounds it; past settings.max_body_chars it is a 413, like a post's.
    body: str = Field(max_length=10_000_000)
    format: BodyFormatField = "markdown"


class PreviewOut(BaseModel):
    body_html: str


class ScheduleRequest(_Body):
    at: UtcTime


class ModerationRequest(_Body):
    reason: str | None = Field(default=None, max_length=500)


class ReactionRequest(_Body):
    kind: ReactionKind = "like"


class CommentCreate(_Body):
    body: str = Field(min_length=1)
    format: BodyFormatField = "markdown"
    parent_id: uuid.UUID | None = None


class CommentUpdate(_Body):
    body: str = Field(min_length=1)
    format: BodyFormatField = "markdown"


class ReportCreate(_Body):
    reason: str = Field(min_length=1, max_length=500)


class ResolveRequest(_Body):
    action: Literal["hide", "restore", "dismiss"]
    reason: str | None = Field(default=None, max_length=500)


class CategoryCreate(_Body):
    slug: str = Field(min_length=1, max_length=64, pattern=SLUG_PATTERN)
    name: str = Field(min_length=1, max_length=100)
    description: str = Field(default="", max_length=500)


# --------------------------------------------------------------------------- responses


class AuthorOut(BaseModel):
    user_id: str
    username: str
    display_name: str | None = None


class PostSummary(BaseModel):
    id: uuid.UUID
    author: AuthorOut
    title: str
    slug: str
    excerpt: str
    tags: list[str]
    category: str | None
    media_ids: list[str]
    visibility: Visibility
    published_at: datetime | None
    comment_count: int
    reactions: dict[str, int]


class PostOut(PostSummary):
    body_html: str
    body_format: BodyFormatField
    body_source: str | None = None  # only for the author (to edit)
    status: PostStatus
    scheduled_at: datetime | None
    created_at: datetime
    updated_at: datetime
    hidden: bool
    hidden_reason: str | None = None  # only for the author and moderators
    my_reactions: list[str] = Field(default_factory=list)


class PostPage(BaseModel):
    items: list[PostSummary]
    next_cursor: str | None


class MyPostPage(BaseModel):
    items: list[PostOut]
    next_cursor: str | None


class SearchHit(PostSummary):
    rank: float
    snippet: str  # HTML: escaped text with <mark>…</mark> around matches


class SearchPage(BaseModel):
    items: list[SearchHit]
    next_cursor: str | None


class CommentOut(BaseModel):
    id: uuid.UUID
    post_id: uuid.UUID
    parent_id: uuid.UUID | None
    depth: int
    state: Literal["visible", "deleted", "hidden"]
    author: AuthorOut | None
    body_html: str
    created_at: datetime
    updated_at: datetime
    edited: bool


class CommentPage(BaseModel):
    items: list[CommentOut]
    next_cursor: str | None


class PostWithComments(PostOut):
    comments: CommentPage | None = Field(
        default=None,
        description="with `?comments=N`: the first page of N comments, as "
        "`GET /api/v1/posts/{post_id}/comments?limit=N` answers it (its `next_cursor` pages on there); null "
        "without it",
    )


class ReactionsOut(BaseModel):
    post_id: uuid.UUID
    counts: dict[str, int]
    mine: list[str]
    kinds: dict[str, str] = Field(default_factory=lambda: dict(REACTION_KINDS))


class TagOut(BaseModel):
    name: str
    post_count: int


class TagPage(BaseModel):
    items: list[TagOut]
    next_cursor: str | None


class CategoryOut(BaseModel):
    slug: str
    name: str
    description: str
    post_count: int


class CategoryPage(BaseModel):
    items: list[CategoryOut]
    next_cursor: str | None


class ReportOut(BaseModel):
    id: uuid.UUID
    target_type: Literal["post", "comment"]
    target_id: uuid.UUID
    reporter_id: str | None
    source: Literal["user", "ai"]
    reason: str
    score: float | None
    labels: list[str]
    status: Literal["open", "resolved"]
    resolution: str | None
    created_at: datetime
    resolved_at: datetime | None
    resolved_by: str | None
    target_hidden: bool | None = None
    target_preview: str | None = None


class ReportPage(BaseModel):
    items: list[ReportOut]
    next_cursor: str | None


# --------------------------------------------------------------------------- events published


@event_type("quark.post.published")
class PostPublished(EventPayload):
    """A post became visible (published now, by its schedule, or again after being unpublished)."""

    post_id: str
    author_id: str
    author_username: str
    title: str
    slug: str
    excerpt: str
    body_text: str  # plain text, capped at settings.event_body_text_max
    tags: list[str]
    category: str | None = None
    visibility: Visibility
    media_ids: list[str]
    published_at: datetime


@event_type("quark.post.updated")
class PostUpdated(EventPayload):
    """A published post was edited (content, tags or visibility)."""

    post_id: str
    author_id: str
    title: str
    slug: str
    excerpt: str
    body_text: str
    tags: list[str]
    category: str | None = None
    visibility: Visibility
    media_ids: list[str]
    updated_at: datetime


@event_type("quark.post.unpublished")
class PostUnpublished(EventPayload):
    """The author took a published post back to draft."""

    post_id: str
    author_id: str


@event_type("quark.post.deleted")
class PostDeleted(EventPayload):
    """A post was deleted (by its author, or because the author's account was deleted)."""

    post_id: str
    author_id: str


@event_type("quark.post.hidden")
class PostHidden(EventPayload):
    """A moderator (or an automatic flag, `actor_id: null`) hid a post pending review."""

    post_id: str
    author_id: str
    actor_id: str | None
    reason: str | None


@event_type("quark.post.restored")
class PostRestored(EventPayload):
    """A moderator restored a hidden post."""

    post_id: str
    author_id: str
    actor_id: str | None
    reason: str | None


@event_type("quark.post.reacted")
class PostReacted(EventPayload):
    """A reaction was added to or removed from a post."""

    post_id: str
    post_author_id: str
    user_id: str
    kind: str
    action: Literal["added", "removed"]


@event_type("quark.post.reported")
class PostReported(EventPayload):
    """A user reported a post or a comment. The moderation queue files it; `author_id`, `post_id`, `title` and
    `excerpt` are the snapshot its moderators see (what was reported, as it was then)."""

    report_id: str
    target_type: Literal["post", "comment"]
    target_id: str
    reporter_id: str
    reason: str
    author_id: str | None = None
    post_id: str | None = None
    title: str | None = None
    excerpt: str | None = None


@event_type("quark.comment.created")
class CommentCreated(EventPayload):
    """A comment (or a reply: `parent_id`) was written on a post."""

    comment_id: str
    post_id: str
    post_author_id: str
    author_id: str
    author_username: str
    parent_id: str | None
    parent_author_id: str | None = None
    body_text: str
    created_at: datetime


@event_type("quark.comment.updated")
class CommentUpdated(EventPayload):
    """A comment's text was edited by its author: the same fields as `quark.comment.created` (the new
    `body_text`) plus `updated_at`, so that moderation judges the edit as it judged the original."""

    comment_id: str
    post_id: str
    post_author_id: str
    author_id: str
    author_username: str
    parent_id: str | None
    parent_author_id: str | None = None
    body_text: str
    created_at: datetime
    updated_at: datetime


@event_type("quark.comment.deleted")
class CommentDeleted(EventPayload):
    """A comment was deleted by its author."""

    comment_id: str
    post_id: str
    author_id: str | None


@event_type("quark.comment.hidden")
class CommentHidden(EventPayload):
    """A moderator (or an automatic flag) hid a comment."""

    comment_id: str
    post_id: str
    author_id: str | None
    actor_id: str | None
    reason: str | None


@event_type("quark.comment.restored")
class CommentRestored(EventPayload):
    """A moderator restored a hidden comment."""

    comment_id: str
    post_id: str
    author_id: str | None
    actor_id: str | None
    reason: str | None


# --------------------------------------------------------------------------- events consumed (never registered)


class _Consumed(BaseModel):
    model_config = ConfigDict(extra="ignore")

    @model_validator(mode="before")
    @classmethod
    def _no_unstorable_text(cls, data: Any) -> Any:
        """A payload PostgreSQL cannot store is invalid: dead-lettered at once instead of failing on every retry."""
        if not all_storable(data):
            raise ValueError("text contains NUL characters or lone surrogates")
        return data


class UserRegistered(_Consumed):
    user_id: str = Field(min_length=1, max_length=64)
    username: str = Field(min_length=1, max_length=64)
    display_name: str | None = None


class ProfileCreated(_Consumed):
    user_id: str = Field(min_length=1, max_length=64)
    username: str = Field(min_length=1, max_length=64)
    display_name: str | None = None


class ProfileUpdated(_Consumed):
    user_id: str = Field(min_length=1, max_length=64)
    username: str = Field(min_length=1, max_length=64)
    display_name: str | None = None
    privacy: Literal["public", "followers"] = "public"


class UserFollowed(_Consumed):
    follower_id: str = Field(min_length=1, max_length=64)
    followee_id: str = Field(min_length=1, max_length=64)
    follower_username: str | None = None
    followee_username: str | None = None


class UserUnfollowed(_Consumed):
    follower_id: str = Field(min_length=1, max_length=64)
    followee_id: str = Field(min_length=1, max_length=64)


class UserBlockChanged(_Consumed):
    blocker_id: str = Field(min_length=1, max_length=64)
    blocked_id: str = Field(min_length=1, max_length=64)


class UserSuspended(_Consumed):
    user_id: str = Field(min_length=1, max_length=64)
    suspended: bool
    reason: str | None = None


class UserDeletedEvent(_Consumed):
    user_id: str = Field(min_length=1, max_length=64)


class ModerationFlagged(_Consumed):
    target_type: Literal["post", "comment"]
    target_id: str = Field(min_length=1, max_length=64)
    score: float = 0.0
    labels: list[str] = Field(default_factory=list)
    reason: str | None = None
    run_id: str | None = Field(default=None, max_length=128)


class ModerationDecided(_Consumed):
    """`quark.moderation.decided`: a moderator's decision on a post or a comment (the queue's case)."""

    decision_id: str = Field(min_length=1, max_length=64)
    kind: str = Field(min_length=1, max_length=32)
    target_id: str = Field(min_length=1, max_length=64)
    module: str = Field(min_length=1, max_length=32)
    action: Literal["dismiss", "hide", "delete", "warn", "suspend"]
    reason: str = Field(default="", max_length=1000)
    moderator_id: str = Field(min_length=1, max_length=64)


class MediaDeleted(_Consumed):
    media_id: str = Field(min_length=1, max_length=64)
    owner_id: str | None = None


class PostRef(_Consumed):
    """Any of blog's own post events, as its timeline consumer reads them."""

    post_id: str
