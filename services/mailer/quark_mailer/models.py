"""Tables of the mailer (its own database): what was sent, for operators; the inbox makes sending idempotent."""

import uuid
from datetime import datetime

from sqlalchemy import DateTime, String, Uuid, func
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from quark_sdk.db import service_metadata


class Base(DeclarativeBase):
    metadata = service_metadata()


class SentMail(Base):
    """One delivered mail: which event asked for it, to whom, and the Message-ID the relay accepted.

    Neither the token nor the body is kept: the mail itself is the only copy of the link."""

    __tablename__ = "sent_mail"

    event_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    kind: Mapped[str] = mapped_column(String(40))
    user_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, index=True)
    recipient: Mapped[str] = mapped_column(String(320))
    message_id: Mapped[str] = mapped_column(String(255))
    sent_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class SentSms(Base):
    """One delivered SMS: which event asked for it, to which number, and the gateway's message id. Never the
    text (it holds the code)."""

    __tablename__ = "sent_sms"

    event_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    kind: Mapped[str] = mapped_column(String(40))
    user_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, index=True)
    recipient: Mapped[str] = mapped_column(String(32))
    message_id: Mapped[str] = mapped_column(String(255))
    sent_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
