"""The hub's own tables: only the service clients of the identity provider (the registry lives in Redis)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import DateTime, String, func
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from quark_sdk.db import service_metadata


class Base(DeclarativeBase):
    metadata = service_metadata()


class ServiceClient(Base):
    """A module allowed to obtain service tokens: client_id is the module name, the secret is stored hashed."""

    __tablename__ = "service_clients"

    client_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    secret_hash: Mapped[str] = mapped_column(String(255))
    # None: the scopes come from the module's registered manifest; a list: exactly these (set by an admin).
    scopes: Mapped[list[Any] | None] = mapped_column(JSONB, nullable=True)
    source: Mapped[str] = mapped_column(String(16), server_default="admin")
    description: Mapped[str] = mapped_column(String(200), server_default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
