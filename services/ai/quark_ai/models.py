"""Tables of the AI service (its own database; nobody else reads them).

Posts, reactions, follows, blocks, mutes and authors' standing are a replica kept from events: the
AI service never reads the blog's or the user service's database.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, DateTime, Float, Index, Integer, String, Text, Uuid, func
from sqlalchemy import text as sql_text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from quark_sdk.db import service_metadata


class Base(DeclarativeBase):
    metadata = service_metadata()


class AgentRun(Base):
    """One run of an agent (moderation, tagging, recommendations, draft, assist): the audit trail."""

    __tablename__ = "agent_runs"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    agent: Mapped[str] = mapped_column(String(32))
    input_type: Mapped[str] = mapped_column(String(32))  # post | comment | user | draft | text
    input_id: Mapped[str | None] = mapped_column(String(128))
    event_id: Mapped[str | None] = mapped_column(String(128))
    user_id: Mapped[str | None] = mapped_column(String(64))
    provider: Mapped[str] = mapped_column(String(32))
    model: Mapped[str] = mapped_column(String(200))
    latency_ms: Mapped[float] = mapped_column(Float)
    outcome: Mapped[str] = mapped_column(String(32))  # ok | flagged | passed | error | unavailable | skipped
    detail: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict, server_default=sql_text("'{}'::jsonb"))
    error: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    __table_args__ = (
        Index("ix_agent_runs_created", "created_at", "id"),
        Index("ix_agent_runs_agent_created", "agent", "created_at", "id"),
    )


class ModerationResult(Base):
    """The moderation agent's verdict on one version of a post or comment, and a moderator's review of it."""

    __tablename__ = "moderation_results"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    run_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    target_type: Mapped[str] = mapped_column(String(16))  # post | comment
    target_id: Mapped[str] = mapped_column(String(64))
    author_id: Mapped[str | None] = mapped_column(String(64))
    score: Mapped[float] = mapped_column(Float)
    classifier_score: Mapped[float] = mapped_column(Float)
    labels: Mapped[list[str]] = mapped_column(JSONB, default=list, server_default=sql_text("'[]'::jsonb"))
    rules: Mapped[list[str]] = mapped_column(JSONB, default=list, server_default=sql_text("'[]'::jsonb"))
    reason: Mapped[str] = mapped_column(String(500))
    flagged: Mapped[bool] = mapped_column(Boolean)
    preview: Mapped[str] = mapped_column(String(300), default="", server_default="")
    decision: Mapped[str | None] = mapped_column(String(16))  # None (unreviewed) | upheld | overruled
    decided_by: Mapped[str | None] = mapped_column(String(64))
    decided_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    decision_reason: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    __table_args__ = (
        Index("ix_moderation_results_created", "created_at", "id"),
        Index("ix_moderation_results_target", "target_type", "target_id"),
    )


class Document(Base):
    """A post as the recommendations see it (kept from quark.post.* events)."""

    __tablename__ = "documents"

    post_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    author_id: Mapped[str] = mapped_column(String(64))
    title: Mapped[str] = mapped_column(String(300))
    slug: Mapped[str] = mapped_column(String(200), default="", server_default="")
    excerpt: Mapped[str] = mapped_column(String(600), default="", server_default="")
    text: Mapped[str] = mapped_column(Text)
    tags: Mapped[list[str]] = mapped_column(JSONB, default=list, server_default=sql_text("'[]'::jsonb"))
    suggested_tags: Mapped[list[str]] = mapped_column(JSONB, default=list, server_default=sql_text("'[]'::jsonb"))
    visibility: Mapped[str] = mapped_column(String(16))
    active: Mapped[bool] = mapped_column(Boolean, default=True, server_default=sql_text("true"))
    hidden: Mapped[bool] = mapped_column(Boolean, default=False, server_default=sql_text("false"))
    published_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    __table_args__ = (Index("ix_documents_published", "published_at"),)


class Reaction(Base):
    """A user's reaction to a post (one row per kind), from quark.post.reacted."""

    __tablename__ = "reactions"

    user_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    post_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(32), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    __table_args__ = (Index("ix_reactions_post", "post_id"),)


class Follow(Base):
    """Who follows whom, from quark.user.followed / unfollowed."""

    __tablename__ = "follows"

    follower_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    followee_id: Mapped[str] = mapped_column(String(64), primary_key=True)


class UserSuggestion(Base):
    """The last recommendations handed to a user: an event goes out only when they change."""

    __tablename__ = "user_suggestions"

    user_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    post_ids: Mapped[list[str]] = mapped_column(JSONB)
    generated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class Draft(Base):
    """A post draft written by a provider; nothing leaves it until its author approves."""

    __tablename__ = "drafts"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    user_id: Mapped[str] = mapped_column(String(64))
    topic: Mapped[str] = mapped_column(Text)
    tone: Mapped[str] = mapped_column(String(32))
    length: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16))  # pending | approved | rejected
    title: Mapped[str] = mapped_column(String(200))
    body: Mapped[str] = mapped_column(Text)
    tags: Mapped[list[str]] = mapped_column(JSONB, default=list, server_default=sql_text("'[]'::jsonb"))
    generated: Mapped[bool] = mapped_column(Boolean)  # False: the local provider's outline, not LLM text
    notice: Mapped[str | None] = mapped_column(String(500))
    warnings: Mapped[list[str]] = mapped_column(JSONB, default=list, server_default=sql_text("'[]'::jsonb"))
    provider: Mapped[str] = mapped_column(String(32))
    model: Mapped[str] = mapped_column(String(200))
    run_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    edits: Mapped[int] = mapped_column(Integer, default=0, server_default=sql_text("0"))
    blog_post_id: Mapped[str | None] = mapped_column(String(64))
    decided_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    __table_args__ = (Index("ix_drafts_user_created", "user_id", "created_at", "id"),)


class Author(Base):
    """What decides who may see an author's posts, as the blog decides it: profile privacy and standing.

    From quark.user.profile_updated (privacy), quark.user.suspended and quark.user.deleted. An author
    never heard of is public and in good standing (the blog's default). A deleted author keeps only
    this row (no name, no text), so a late post event cannot bring their posts back.
    """

    __tablename__ = "authors"

    user_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    privacy: Mapped[str] = mapped_column(String(16), default="public", server_default="public")
    suspended: Mapped[bool] = mapped_column(Boolean, default=False, server_default=sql_text("false"))
    deleted: Mapped[bool] = mapped_column(Boolean, default=False, server_default=sql_text("false"))


class Block(Base):
    """`blocker` blocked `blocked` (quark.user.blocked / unblocked): neither sees the other's posts."""

    __tablename__ = "blocks"

    blocker_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    blocked_id: Mapped[str] = mapped_column(String(64), primary_key=True)

    __table_args__ = (Index("ix_blocks_blocked", "blocked_id"),)


class Mute(Base):
    """`muter` muted `muted` (quark.user.muted / unmuted): `muted`'s posts are not suggested to `muter`."""

    __tablename__ = "mutes"

    muter_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    muted_id: Mapped[str] = mapped_column(String(64), primary_key=True)


class ModerationConfig(Base):
    """The moderation thresholds an admin set from the console (one row, id 1); absent: the settings' values.

    Kept in the database, not only in the settings, so every instance applies the same threshold at once and
    a change survives a restart; the change itself is audited by `quark.ai.thresholds_changed`."""

    __tablename__ = "moderation_config"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    threshold: Mapped[float] = mapped_column(Float)
    rule_scores: Mapped[dict[str, float]] = mapped_column(JSONB, default=dict, server_default=sql_text("'{}'::jsonb"))
    updated_by: Mapped[str] = mapped_column(String(64))
    reason: Mapped[str | None] = mapped_column(String(500))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
