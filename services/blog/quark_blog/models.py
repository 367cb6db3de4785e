"""Tables of the blog service (its own database; the schema history is in migrations/).

Replicas fed by events: `authors` (names, privacy, suspension), `follows` and `blocks`.
Own data: posts (with a generated, GIN-indexed tsvector), post_stats (counters kept
apart from the wide post row so a like never rewrites the post), reactions, comments
(threaded by a materialised path), tags, categories and reports.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    Computed,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, TSVECTOR
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from quark_sdk.db import service_metadata

SEARCH_CONFIG = "english"
SEARCH_VECTOR = (
    f"setweight(to_tsvector('{SEARCH_CONFIG}'::regconfig, coalesce(title, '')), 'A') || "
    f"setweight(to_tsvector('{SEARCH_CONFIG}'::regconfig, coalesce(tags_text, '')), 'B') || "
    f"setweight(to_tsvector('{SEARCH_CONFIG}'::regconfig, coalesce(body_text, '')), 'C')"
)


class Base(DeclarativeBase):
    metadata = service_metadata()


class Author(Base):
    """Replica of a user's public identity (from quark.auth.* and quark.user.* events, or a token)."""

    __tablename__ = "authors"

    user_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    username: Mapped[str] = mapped_column(String(64))
    display_name: Mapped[str | None] = mapped_column(String(200), nullable=True)
    privacy: Mapped[str] = mapped_column(String(16), server_default="public")
    suspended: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    deleted: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    __table_args__ = (Index("ix_authors_username_lower", func.lower(username)),)


class Follow(Base):
    """Replica of the follow graph: `follower_id` follows `followee_id`."""

    __tablename__ = "follows"

    follower_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    followee_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    __table_args__ = (Index("ix_follows_followee", "followee_id", "follower_id"),)


class Block(Base):
    """Replica of blocks: `blocker_id` blocked `blocked_id` (content hidden both ways)."""

    __tablename__ = "blocks"

    blocker_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    blocked_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    __table_args__ = (Index("ix_blocks_blocked", "blocked_id", "blocker_id"),)


class Category(Base):
    __tablename__ = "categories"

    slug: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    description: Mapped[str] = mapped_column(String(500), server_default="")
    post_count: Mapped[int] = mapped_column(Integer, server_default="0")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class Tag(Base):
    """A tag becomes known when a post first uses it; `post_count` counts listed public posts."""

    __tablename__ = "tags"

    name: Mapped[str] = mapped_column(String(40), primary_key=True)
    post_count: Mapped[int] = mapped_column(Integer, server_default="0")

    __table_args__ = (Index("ix_tags_count", post_count.desc(), "name"),)


class Post(Base):
    __tablename__ = "posts"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    author_id: Mapped[str] = mapped_column(String(64))
    slug: Mapped[str] = mapped_column(String(100))
    title: Mapped[str] = mapped_column(String(200))
    body_format: Mapped[str] = mapped_column(String(16))
    body_source: Mapped[str] = mapped_column(Text)
    body_html: Mapped[str] = mapped_column(Text)
    body_text: Mapped[str] = mapped_column(Text)
    excerpt: Mapped[str] = mapped_column(String(600))
    excerpt_custom: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    tags: Mapped[list[str]] = mapped_column(ARRAY(String(40)), server_default="{}")
    tags_text: Mapped[str] = mapped_column(Text, server_default="")
    category: Mapped[str | None] = mapped_column(String(64), ForeignKey("categories.slug"), nullable=True)
    media_ids: Mapped[list[str]] = mapped_column(ARRAY(String(64)), server_default="{}")
    visibility: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16))  # draft | scheduled | published
    scheduled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    published_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    deleted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    hidden: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    hidden_reason: Mapped[str | None] = mapped_column(String(500), nullable=True)
    hidden_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    hidden_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    search: Mapped[Any] = mapped_column(TSVECTOR, Computed(SEARCH_VECTOR, persisted=True), deferred=True)

    __table_args__ = (
        Index("uq_posts_author_slug", "author_id", "slug", unique=True, postgresql_where=text("deleted_at IS NULL")),
        Index(
            "ix_posts_author_published",
            "author_id",
            published_at.desc(),
            id.desc(),
            postgresql_where=text("status = 'published' AND deleted_at IS NULL"),
        ),
        Index(
            "ix_posts_public",
            published_at.desc(),
            id.desc(),
            postgresql_where=text(
                "status = 'published' AND deleted_at IS NULL AND NOT hidden AND visibility = 'public'"
            ),
        ),
        Index(
            "ix_posts_category",
            "category",
            published_at.desc(),
            id.desc(),
            postgresql_where=text("status = 'published' AND deleted_at IS NULL"),
        ),
        Index(
            "ix_posts_author_created",
            "author_id",
            created_at.desc(),
            id.desc(),
            postgresql_where=text("deleted_at IS NULL"),
        ),
        Index(
            "ix_posts_scheduled", "scheduled_at", postgresql_where=text("status = 'scheduled' AND deleted_at IS NULL")
        ),
        Index("ix_posts_search", "search", postgresql_using="gin"),
        Index("ix_posts_tags", "tags", postgresql_using="gin"),
        Index("ix_posts_media", "media_ids", postgresql_using="gin"),
    )


class PostStats(Base):
    """Counters of a post, in their own narrow row: a like never rewrites the post (or its tsvector)."""

    __tablename__ = "post_stats"

    post_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("posts.id", ondelete="CASCADE"), primary_key=True)
    comment_count: Mapped[int] = mapped_column(Integer, server_default="0")
    reactions: Mapped[dict[str, int]] = mapped_column(JSONB, server_default=text("'{}'::jsonb"))


class Reaction(Base):
    __tablename__ = "reactions"

    post_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("posts.id", ondelete="CASCADE"), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    __table_args__ = (Index("ix_reactions_user", "user_id"),)


class Comment(Base):
    __tablename__ = "comments"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    post_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("posts.id", ondelete="CASCADE"))
    author_id: Mapped[str | None] = mapped_column(String(64), nullable=True)  # None once the author is deleted
    parent_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("comments.id", ondelete="CASCADE"), nullable=True)
    # Fixed-width segments, one per ancestor: ordering by path (collation C) is depth-first thread order.
    path: Mapped[str] = mapped_column(String(2000, collation="C"))
    depth: Mapped[int] = mapped_column(Integer)
    body_source: Mapped[str] = mapped_column(Text)
    body_html: Mapped[str] = mapped_column(Text)
    body_text: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    edited: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    deleted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    hidden: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    hidden_reason: Mapped[str | None] = mapped_column(String(500), nullable=True)
    hidden_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    hidden_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)

    __table_args__ = (
        Index("ix_comments_post_path", "post_id", "path"),
        Index("ix_comments_author", "author_id"),
        Index("ix_comments_parent", "parent_id"),
    )


class Report(Base):
    """A report by a user, or an automatic flag (`source = 'ai'`); open reports form the moderation queue."""

    __tablename__ = "reports"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    target_type: Mapped[str] = mapped_column(String(16))  # post | comment
    target_id: Mapped[uuid.UUID] = mapped_column()
    reporter_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    source: Mapped[str] = mapped_column(String(8))  # user | ai
    reason: Mapped[str] = mapped_column(String(500))
    score: Mapped[float | None] = mapped_column(Float, nullable=True)
    labels: Mapped[list[str]] = mapped_column(ARRAY(String(64)), server_default="{}")
    run_id: Mapped[str | None] = mapped_column(String(128), nullable=True)
    status: Mapped[str] = mapped_column(String(16), server_default="open")  # open | resolved
    resolution: Mapped[str | None] = mapped_column(String(16), nullable=True)  # hidden | restored | dismissed
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    resolved_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    resolved_by: Mapped[str | None] = mapped_column(String(64), nullable=True)

    __table_args__ = (
        Index(
            "uq_reports_open_per_reporter",
            "target_type",
            "target_id",
            "reporter_id",
            unique=True,
            postgresql_where=text("status = 'open' AND reporter_id IS NOT NULL"),
        ),
        Index("ix_reports_queue", "created_at", "id", postgresql_where=text("status = 'open'")),
        Index("ix_reports_target", "target_type", "target_id"),
    )
