"""Tables of the moderation module (its own database): cases, their signals and decisions, the audit log."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Identity,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    Uuid,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from quark_sdk.db import service_metadata

KINDS = ("post", "comment", "chat_message", "media", "profile")
STATES = ("open", "dismissed", "actioned")
ACTIONS = ("dismiss", "hide", "delete", "warn", "suspend")


class Base(DeclarativeBase):
    metadata = service_metadata()


class Case(Base):
    """Everything said about one target while it waits for a moderator: one open case per (kind, target).

    A signal about a target whose last case is closed opens a new case (new evidence, new review)."""

    __tablename__ = "cases"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    target_id: Mapped[str] = mapped_column(String(64))
    module: Mapped[str] = mapped_column(String(32))  # the module owning the target, which applies decisions
    author_id: Mapped[str | None] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16), default="open", server_default="open")
    # What the moderator sees: a snapshot taken when reported (an excerpt, a message's neighbourhood).
    context: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict, server_default=text("'{}'::jsonb"))
    reports: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    flags: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    max_score: Mapped[float | None] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    closed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    closed_by: Mapped[str | None] = mapped_column(String(64))

    __table_args__ = (
        CheckConstraint(f"kind IN {KINDS}", name="kind"),
        CheckConstraint(f"state IN {STATES}", name="state"),
        Index("uq_cases_open_target", "kind", "target_id", unique=True, postgresql_where=text("state = 'open'")),
        Index("ix_cases_queue", "state", "created_at", "id"),
        Index("ix_cases_target", "kind", "target_id"),
    )


class Signal(Base):
    """One report by a person (`source = 'user'`) or one automatic flag (`source = 'ai'`) in a case."""

    __tablename__ = "signals"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    case_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("cases.id", ondelete="CASCADE"), index=True)
    source: Mapped[str] = mapped_column(String(8))
    reporter_id: Mapped[str | None] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(String(1000), default="", server_default="")
    score: Mapped[float | None] = mapped_column(Float)
    labels: Mapped[list[str]] = mapped_column(JSONB, default=list, server_default=text("'[]'::jsonb"))
    # The owning module's report id, or the AI's run id: one signal per external id.
    external_id: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        CheckConstraint("source IN ('user', 'ai')", name="source"),
        UniqueConstraint("source", "external_id", name="uq_signals_external"),
        Index("uq_signals_reporter", "case_id", "reporter_id", unique=True,
              postgresql_where=text("reporter_id IS NOT NULL")),
    )


class Decision(Base):
    """A moderator's decision on a case; each action at most once per case (a replay returns the first)."""

    __tablename__ = "decisions"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    case_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("cases.id", ondelete="CASCADE"), index=True)
    action: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(String(1000))
    moderator_id: Mapped[str] = mapped_column(String(64))
    duration_seconds: Mapped[int | None] = mapped_column(Integer)
    until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        CheckConstraint(f"action IN {ACTIONS}", name="action"),
        UniqueConstraint("case_id", "action", name="uq_decisions_case_action"),
    )


class AuditEntry(Base):
    """Who did what, when and why: every decision here, and admin actions other modules report by event."""

    __tablename__ = "audit_log"

    seq: Mapped[int] = mapped_column(BigInteger, Identity(always=False), primary_key=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    actor_id: Mapped[str | None] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(64))  # e.g. moderation.hide, auth.role_changed
    module: Mapped[str] = mapped_column(String(32))
    target_kind: Mapped[str | None] = mapped_column(String(32))
    target_id: Mapped[str | None] = mapped_column(String(128))
    reason: Mapped[str | None] = mapped_column(Text)
    details: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict, server_default=text("'{}'::jsonb"))
    event_id: Mapped[str | None] = mapped_column(String(128), unique=True)  # the reporting event (dedupe)

    __table_args__ = (
        Index("ix_audit_actor", "actor_id", "seq"),
        Index("ix_audit_action", "action", "seq"),
        Index("ix_audit_target", "target_id", "seq"),
        Index("ix_audit_at", "at"),
    )
