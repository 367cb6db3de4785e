"""Tables of the auth service (its own database; no other service reads them).

Every secret a client holds (refresh tokens, email/reset tokens, recovery codes) is stored only as a
SHA-256 digest: they are 128+ bits of randomness, so a fast hash is enough and lookups stay indexed.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import BigInteger, DateTime, ForeignKey, Index, String, UniqueConstraint, func
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from quark_sdk.db import service_metadata


class Base(DeclarativeBase):
    metadata = service_metadata()


class User(Base):
    __tablename__ = "users"
    __table_args__ = (Index("ix_users_created_at_id", "created_at", "id"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    username: Mapped[str] = mapped_column(String(32))
    # An account has an email, a verified phone or a linked provider (at least one way to sign in).
    email: Mapped[str | None] = mapped_column(String(254))
    display_name: Mapped[str | None] = mapped_column(String(64))
    password_hash: Mapped[str | None] = mapped_column(String(100))  # None: signs in by phone code or provider
    email_verified_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    totp_secret: Mapped[str | None] = mapped_column(String(64))  # set once 2FA is confirmed
    totp_pending_secret: Mapped[str | None] = mapped_column(String(64))  # between /2fa/setup and /2fa/confirm
    totp_last_counter: Mapped[int | None] = mapped_column(BigInteger)  # replay protection: last accepted step
    totp_enabled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    password_changed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    # Suspension is decided by the user service (`quark.user.suspended`); auth enforces it at login/refresh.
    suspended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Time of the last suspension event applied: an older event arriving late (redelivery) changes nothing.
    suspension_changed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # E.164. Unique only once verified: an unproven number blocks nobody (see uq_users_phone_verified).
    phone: Mapped[str | None] = mapped_column(String(16))
    phone_verified_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    phone_mfa: Mapped[bool] = mapped_column(default=False, server_default="false")  # SMS as second factor

    roles: Mapped[list[UserRole]] = relationship(
        back_populates="user", cascade="all, delete-orphan", passive_deletes=True, lazy="selectin",
        order_by="UserRole.role",
    )

    @property
    def role_names(self) -> list[str]:
        return sorted(r.role for r in self.roles)

    @property
    def email_verified(self) -> bool:
        return self.email_verified_at is not None

    @property
    def mfa_enabled(self) -> bool:
        return self.totp_secret is not None

    @property
    def suspended(self) -> bool:
        return self.suspended_at is not None

    @property
    def phone_verified(self) -> bool:
        return self.phone is not None and self.phone_verified_at is not None

    @property
    def verified_phone(self) -> str | None:
        return self.phone if self.phone_verified_at is not None else None

    @property
    def sms_mfa(self) -> bool:
        """SMS codes as the second factor: only when TOTP is not set (TOTP always wins; SMS is weaker)."""
        return self.phone_mfa and self.phone_verified and self.totp_secret is None


# Unique case-insensitively: "Alice" and "alice" are the same account.
Index("uq_users_username_lower", func.lower(User.username), unique=True)
Index("uq_users_email_lower", func.lower(User.email), unique=True)
Index("uq_users_phone_verified", User.phone, unique=True, postgresql_where=User.phone_verified_at.is_not(None))


class UserRole(Base):
    """One role held by a user, with who granted it (the audit trail is the role_changed event)."""

    __tablename__ = "user_roles"

    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    role: Mapped[str] = mapped_column(String(32), primary_key=True)
    granted_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    granted_by: Mapped[str | None] = mapped_column(String(64))

    user: Mapped[User] = relationship(back_populates="roles")


class LoginSession(Base):
    """A login on one device: the family of refresh tokens that descend from it."""

    __tablename__ = "sessions"
    __table_args__ = (Index("ix_sessions_user_id_created_at", "user_id", "created_at"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    last_used_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))  # of the newest refresh token
    max_expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))  # absolute end of the session
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_reason: Mapped[str | None] = mapped_column(String(32))
    ip: Mapped[str | None] = mapped_column(String(64))
    user_agent: Mapped[str | None] = mapped_column(String(256))
    mfa: Mapped[bool] = mapped_column(default=False)


class RefreshToken(Base):
    """One refresh token of a session; used_at is set when it is rotated (a second use is a theft signal)."""

    __tablename__ = "refresh_tokens"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    session_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("sessions.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class OneTimeToken(Base):
    """Email verification and password reset tokens: hashed, expiring, single use."""

    __tablename__ = "one_time_tokens"
    __table_args__ = (Index("ix_one_time_tokens_user_id_kind", "user_id", "kind"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(32))  # verify_email | reset_password
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    email: Mapped[str] = mapped_column(String(254))  # the address it was sent to
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class RecoveryCode(Base):
    """2FA recovery codes, shown once at /2fa/confirm; each works once."""

    __tablename__ = "recovery_codes"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    code_hash: Mapped[str] = mapped_column(String(64), unique=True)
    used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class ExternalIdentity(Base):
    """A provider account (OIDC / OAuth2) linked to a user: found again by (provider, subject), never by email."""

    __tablename__ = "external_identities"
    __table_args__ = (UniqueConstraint("provider", "subject", name="uq_external_identities_provider_subject"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    provider: Mapped[str] = mapped_column(String(32))
    subject: Mapped[str] = mapped_column(String(255))
    email: Mapped[str | None] = mapped_column(String(254))  # as the provider said, for display
    email_verified: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    last_used_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
