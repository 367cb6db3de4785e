"""Tables of the user service (its own database; nobody else reads them)."""

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    Integer,
    String,
    Text,
    Uuid,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from quark_sdk.db import service_metadata

PRIVACY_VALUES = ("public", "followers")


class Base(DeclarativeBase):
    metadata = service_metadata()


class Profile(Base):
    """One row per account known from the auth service; a deleted account stays as an anonymous tombstone."""

    __tablename__ = "profiles"

    user_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, Identity(always=False), unique=True)
    username: Mapped[str] = mapped_column(String(64))
    display_name: Mapped[str | None] = mapped_column(String(100))
    bio: Mapped[str] = mapped_column(Text, default="", server_default="")
    links: Mapped[list[str]] = mapped_column(JSONB, default=list, server_default=text("'[]'::jsonb"))
    locale: Mapped[str | None] = mapped_column(String(35))
    privacy: Mapped[str] = mapped_column(String(16), default="public", server_default="public")
    avatar_media_id: Mapped[str | None] = mapped_column(String(64))
    avatar_variants: Mapped[dict[str, str] | None] = mapped_column(JSONB)
    avatar_pending_media_id: Mapped[str | None] = mapped_column(String(64))
    roles: Mapped[list[str]] = mapped_column(JSONB, default=list, server_default=text("'[]'::jsonb"))
    verified: Mapped[bool] = mapped_column(Boolean, default=False, server_default=text("false"))
    suspended: Mapped[bool] = mapped_column(Boolean, default=False, server_default=text("false"))
    suspended_reason: Mapped[str | None] = mapped_column(String(500))
    suspended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    suspended_by: Mapped[str | None] = mapped_column(String(64))
    # The end of a timed suspension (null = indefinite); the expiry job lifts it once it has passed.
    suspended_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    followers_count: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    following_count: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    last_login_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    deleted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        CheckConstraint("privacy IN ('public', 'followers')", name="privacy"),
        CheckConstraint("followers_count >= 0 AND following_count >= 0", name="counts"),
        # Usernames are unique case-insensitively (as in auth). text_pattern_ops makes the same index
        # serve equality lookups and `lower(username) LIKE 'prefix%'` search under any collation.
        Index("uq_profiles_username_lower", func.lower(username).label("username_lower"), unique=True,
              postgresql_ops={"username_lower": "text_pattern_ops"}),
        Index("ix_profiles_display_name_prefix", func.lower(display_name).label("display_name_lower"),
              postgresql_ops={"display_name_lower": "text_pattern_ops"}),
        Index("ix_profiles_suspended_until", "suspended_until",
              postgresql_where=text("suspended AND suspended_until IS NOT NULL")),
    )


def _user_fk() -> ForeignKey:
    return ForeignKey("profiles.user_id", ondelete="CASCADE")


class Follow(Base):
    __tablename__ = "follows"

    follower_id: Mapped[uuid.UUID] = mapped_column(Uuid, _user_fk(), primary_key=True)
    followee_id: Mapped[uuid.UUID] = mapped_column(Uuid, _user_fk(), primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, Identity(always=False), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    __table_args__ = (
        CheckConstraint("follower_id <> followee_id", name="not_self"),
        Index("ix_follows_followee_seq", "followee_id", "seq"),
        Index("ix_follows_follower_seq", "follower_id", "seq"),
    )


class FollowRequest(Base):
    __tablename__ = "follow_requests"

    requester_id: Mapped[uuid.UUID] = mapped_column(Uuid, _user_fk(), primary_key=True)
    target_id: Mapped[uuid.UUID] = mapped_column(Uuid, _user_fk(), primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, Identity(always=False), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    __table_args__ = (
        CheckConstraint("requester_id <> target_id", name="not_self"),
        Index("ix_follow_requests_target_seq", "target_id", "seq"),
    )


class Block(Base):
    __tablename__ = "blocks"

    blocker_id: Mapped[uuid.UUID] = mapped_column(Uuid, _user_fk(), primary_key=True)
    blocked_id: Mapped[uuid.UUID] = mapped_column(Uuid, _user_fk(), primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, Identity(always=False), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    __table_args__ = (
        CheckConstraint("blocker_id <> blocked_id", name="not_self"),
        Index("ix_blocks_blocker_seq", "blocker_id", "seq"),
        Index("ix_blocks_blocked_id", "blocked_id"),
    )


class Mute(Base):
    __tablename__ = "mutes"

    muter_id: Mapped[uuid.UUID] = mapped_column(Uuid, _user_fk(), primary_key=True)
    muted_id: Mapped[uuid.UUID] = mapped_column(Uuid, _user_fk(), primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, Identity(always=False), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    __table_args__ = (
        CheckConstraint("muter_id <> muted_id", name="not_self"),
        Index("ix_mutes_muter_seq", "muter_id", "seq"),
        Index("ix_mutes_muted_id", "muted_id"),
    )


class Activity(Base):
    """The user's own history; `target_id` is set to NULL when the other account is deleted."""

    __tablename__ = "activity"

    seq: Mapped[int] = mapped_column(BigInteger, Identity(always=False), primary_key=True)
    user_id: Mapped[uuid.UUID] = mapped_column(Uuid, _user_fk())
    kind: Mapped[str] = mapped_column(String(32))
    target_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, ForeignKey("profiles.user_id", ondelete="SET NULL"))
    data: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict, server_default=text("'{}'::jsonb"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    __table_args__ = (
        Index("ix_activity_user_seq", "user_id", "seq"),
        Index("ix_activity_target_id", "target_id", postgresql_where=text("target_id IS NOT NULL")),
        Index("ix_activity_created_at", "created_at"),
    )


class MediaAsset(Base):
    """Processed media that may become an avatar (kept so a late `avatar_media_id` applies at once)."""

    __tablename__ = "media_assets"

    media_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    owner_id: Mapped[str] = mapped_column(String(64), index=True)
    variants: Mapped[dict[str, str]] = mapped_column(JSONB)
    width: Mapped[int | None] = mapped_column(Integer)
    height: Mapped[int | None] = mapped_column(Integer)
    processed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class ProfileReport(Base):
    """Someone's report of a profile, open until the moderation queue decides (one open per reporter)."""

    __tablename__ = "profile_reports"
    __table_args__ = (
        Index("uq_profile_reports_open", "user_id", "reporter_id", unique=True,
              postgresql_where=text("status = 'open'")),
        Index("ix_profile_reports_user", "user_id"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    user_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    reporter_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    reason: Mapped[str] = mapped_column(String(1000))
    status: Mapped[str] = mapped_column(String(16), default="open", server_default="open")
    resolution: Mapped[str | None] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    resolved_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
