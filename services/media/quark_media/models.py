"""Tables of the media service (its own database; nobody else reads them)."""

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, CheckConstraint, DateTime, Identity, Index, Integer, String, Uuid, func, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from quark_sdk.db import service_metadata

STATUSES = ("uploaded", "processing", "ready", "failed")


class Base(DeclarativeBase):
    metadata = service_metadata()


class Media(Base):
    """One uploaded image. Storage keys derive from owner and id, never from the client's filename."""

    __tablename__ = "media"
    __table_args__ = (
        CheckConstraint("status IN ('uploaded', 'processing', 'ready', 'failed')", name="status"),
        Index("ix_media_owner_seq", "owner_id", "seq"),
        Index("ix_media_orphans", "created_at", postgresql_where=text("attached_at IS NULL")),
        Index(
            "ix_media_pending", "status", "updated_at", postgresql_where=text("status IN ('uploaded', 'processing')")
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, Identity(always=False), unique=True)
    owner_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    purpose: Mapped[str | None] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16))
    mime_type: Mapped[str] = mapped_column(String(32))  # of the upload, from its content
    size: Mapped[int] = mapped_column(BigInteger)  # bytes uploaded: what the quota counts
    filename: Mapped[str | None] = mapped_column(String(255))  # shown back to the owner only; never a key
    width: Mapped[int | None] = mapped_column(Integer)
    height: Mapped[int | None] = mapped_column(Integer)
    blurhash: Mapped[str | None] = mapped_column(String(64))
    dominant_color: Mapped[str | None] = mapped_column(String(7))
    # {name: {key, width, height, size, etag, content_type}} once ready.
    variants: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict, server_default=text("'{}'::jsonb"))
    source_key: Mapped[str | None] = mapped_column(String(300))  # the raw upload, removed once processed
    error: Mapped[str | None] = mapped_column(String(300))
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    processing_started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    attached_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class Usage(Base):
    """Per-owner totals the quota is checked against; locked row by row so concurrent uploads cannot overshoot."""

    __tablename__ = "usage"

    owner_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    count: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    bytes: Mapped[int] = mapped_column(BigInteger, default=0, server_default=text("0"))


class MediaReport(Base):
    """Someone's report of an uploaded file, open until the moderation queue decides (one open per reporter)."""

    __tablename__ = "media_reports"
    __table_args__ = (
        Index("uq_media_reports_open", "media_id", "reporter_id", unique=True,
              postgresql_where=text("status = 'open'")),
        Index("ix_media_reports_media", "media_id"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    media_id: Mapped[uuid.UUID] = mapped_column(Uuid)  # no foreign key: the report outlives a deleted file
    reporter_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    reason: Mapped[str] = mapped_column(String(1000))
    status: Mapped[str] = mapped_column(String(16), default="open", server_default="open")
    resolution: Mapped[str | None] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    resolved_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
