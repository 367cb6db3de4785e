"""Tables of the messaging service (its own database; nobody else reads them).

Messages are numbered per conversation (`seq`, allocated under the conversation's row lock), so
within a conversation the numbering is also the commit order: a client that resumes "after seq N"
can never miss a message that committed later with a smaller number.
"""

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    Uuid,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from quark_sdk.db import service_metadata

KINDS = ("direct", "group", "channel")
ROLES = ("owner", "admin", "member", "subscriber")


class Base(DeclarativeBase):
    metadata = service_metadata()


class User(Base):
    """Replica of the accounts messaging needs to know by name (mentions); filled from events and tokens."""

    __tablename__ = "users"

    user_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    username: Mapped[str] = mapped_column(String(64))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    __table_args__ = (Index("ix_users_username_lower", func.lower(username).label("username_lower")),)


class Block(Base):
    """Replica of quark.user.blocked / unblocked: `blocker` does not want to hear from `blocked`."""

    __tablename__ = "blocks"

    blocker_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    blocked_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class Conversation(Base):
    __tablename__ = "conversations"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    kind: Mapped[str] = mapped_column(String(16))
    title: Mapped[str | None] = mapped_column(String(200))
    owner_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    # "<smaller uuid>:<larger uuid>" for direct chats: one conversation per pair, enforced by the index.
    direct_key: Mapped[str | None] = mapped_column(String(80), unique=True)
    last_seq: Mapped[int] = mapped_column(BigInteger, default=0, server_default=text("0"))
    member_count: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    last_activity_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    __table_args__ = (
        CheckConstraint("kind IN ('direct', 'group', 'channel')", name="kind"),
        Index("ix_conversations_channels", "kind", "last_activity_at", "id", postgresql_where=text("kind = 'channel'")),
    )


class Member(Base):
    __tablename__ = "members"

    conversation_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("conversations.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    role: Mapped[str] = mapped_column(String(16))
    last_read_seq: Mapped[int] = mapped_column(BigInteger, default=0, server_default=text("0"))
    joined_seq: Mapped[int] = mapped_column(BigInteger, default=0, server_default=text("0"))
    joined_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    __table_args__ = (
        CheckConstraint("role IN ('owner', 'admin', 'member', 'subscriber')", name="role"),
        Index("ix_members_user", "user_id"),
    )


class Message(Base):
    __tablename__ = "messages"

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=False), primary_key=True)
    conversation_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("conversations.id", ondelete="CASCADE"))
    seq: Mapped[int] = mapped_column(BigInteger)
    sender_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    body: Mapped[str] = mapped_column(Text, default="", server_default="")
    reply_to_id: Mapped[int | None] = mapped_column(BigInteger)
    attachments: Mapped[list[str]] = mapped_column(JSONB, default=list, server_default=text("'[]'::jsonb"))
    mentions: Mapped[list[str]] = mapped_column(JSONB, default=list, server_default=text("'[]'::jsonb"))
    client_msg_id: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    edited_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    deleted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Hidden by a moderator's decision: shown to nobody (a tombstone), the words kept for the record.
    hidden_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        UniqueConstraint("conversation_id", "seq", name="uq_messages_conversation_seq"),
        # A resend with the same client id is the same message (idempotent send).
        Index(
            "uq_messages_client_id",
            "sender_id",
            "client_msg_id",
            unique=True,
            postgresql_where=text("client_msg_id IS NOT NULL"),
        ),
        Index("ix_messages_sender", "sender_id"),
    )


class Notification(Base):
    __tablename__ = "notifications"

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=False), primary_key=True)
    user_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    kind: Mapped[str] = mapped_column(String(32))
    actor_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    data: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict, server_default=text("'{}'::jsonb"))
    # Unread notifications with the same key collapse into one (e.g. messages of one conversation).
    group_key: Mapped[str | None] = mapped_column(String(120))
    count: Mapped[int] = mapped_column(Integer, default=1, server_default=text("1"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    read_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        Index("ix_notifications_user", "user_id", "id"),
        Index(
            "uq_notifications_unread_group",
            "user_id",
            "group_key",
            unique=True,
            postgresql_where=text("read_at IS NULL AND group_key IS NOT NULL"),
        ),
        Index("ix_notifications_actor", "actor_id"),
    )


class MessageReport(Base):
    """A participant's report of a message, open until the moderation queue decides (one open per reporter)."""

    __tablename__ = "message_reports"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    message_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("messages.id", ondelete="CASCADE"))
    reporter_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    reason: Mapped[str] = mapped_column(String(1000))
    status: Mapped[str] = mapped_column(String(16), default="open", server_default="open")  # open | resolved
    resolution: Mapped[str | None] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    resolved_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        Index("uq_message_reports_open", "message_id", "reporter_id", unique=True,
              postgresql_where=text("status = 'open'")),
        Index("ix_message_reports_message", "message_id"),
    )
