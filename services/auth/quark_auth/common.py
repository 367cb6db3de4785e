"""What every part of auth shares: errors, secrets and digests, address and name checks, user lookups,
and the one way an email is queued (a one-time token and the `email_requested` event).

The domain modules (accounts, signin, mfa, sessions, recovery, admin, suspension) are plain functions
over a session and the runtime, no HTTP types. Every state change and its event are written in one
transaction (`add_event`). Input is validated before anything is written, so a refused request changes
nothing. Secrets handed to clients (refresh, email and reset tokens, recovery codes, MFA challenges) are
stored only as SHA-256 digests, and none of them, nor any password, is ever logged — except the
development-only email log line, which exists so a developer can click the link.
"""

from __future__ import annotations

import hashlib
import logging
import re
import secrets
import uuid
from datetime import timedelta
from typing import Literal

from email_validator import EmailNotValidError, validate_email
from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from quark_auth.models import OneTimeToken, User
from quark_auth.runtime import AuthRuntime
from quark_auth.schemas import (
    EmailRequested,
)
from quark_sdk.errors import (
    Conflict,
    InvalidInput,
    NotFound,
    QuarkError,
)
from quark_sdk.outbox import add_event

log = logging.getLogger("quark.auth")
mail_log = logging.getLogger("quark.auth.mail")

ISSUER = "quark-auth"
EmailKind = Literal["verify_email", "reset_password"]
# The emails sent: the two token kinds, and "someone tried to register with your address" (a reset link).
MailKind = Literal["verify_email", "reset_password", "account_exists"]
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2066-\u2069]")


class InvalidToken(QuarkError):
    """An email-verification or password-reset token that is unknown, used or expired."""

    status, code, title = 400, "invalid-token", "Invalid or expired token"


class AccountSuspended(QuarkError):
    """The account is suspended (by an admin, through the user service): no login, no refresh."""

    status, code, title = 403, "account-suspended", "Account suspended"


INVALID_CREDENTIALS = "invalid username/email or password"
SUSPENDED = "this account is suspended; contact the station's administrators"



def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def new_secret() -> str:
    """256 bits, URL-safe: refresh tokens, email tokens, MFA challenges."""
    return secrets.token_urlsafe(32)


def normalize_email(raw: str, *, field: str = "email") -> str:
    """Syntax check and normalise (domain lower-cased, IDNA); no DNS lookups (no network on the hot path)."""
    try:
        return validate_email(raw.strip(), check_deliverability=False).normalized
    except EmailNotValidError as exc:
        raise InvalidInput(f"email address is not valid: {exc}", field=field) from None


def clean_display_name(raw: str | None) -> str | None:
    if raw is None:
        return None
    name = " ".join(raw.split())
    if not name:
        return None
    if _CONTROL.search(name):
        raise InvalidInput("display name must not contain control characters", field="display_name")
    return name


async def user_by_login(session: AsyncSession, login: str, *, phone: str | None = None) -> User | None:
    """By username, email, or (`phone`, already normalised to E.164) a verified phone number."""
    if phone is not None:
        return (await session.scalars(select(User).where(User.phone == phone,
                                                         User.phone_verified_at.is_not(None)))).first()
    key = login.strip().lower()
    column = User.email if "@" in key else User.username
    return (await session.scalars(select(User).where(func.lower(column) == key))).first()


async def get_user(session: AsyncSession, user_id: uuid.UUID | str) -> User:
    try:
        ident = user_id if isinstance(user_id, uuid.UUID) else uuid.UUID(str(user_id))
    except ValueError:
        raise NotFound("user not found") from None
    user = await session.get(User, ident)
    if user is None:
        raise NotFound("user not found")
    return user


def log_email(rt: AuthRuntime, event: EmailRequested) -> None:
    """Development only: print the email's link so a developer can click through without a mailer."""
    if rt.settings.env == "dev":
        mail_log.info("email %s for %s <%s>: %s", event.kind, event.username, event.email, event.link)


async def queue_email(session: AsyncSession, rt: AuthRuntime, user: User, mail: MailKind) -> EmailRequested:
    """Create a one-time token (replacing unused ones of the same kind) and the email_requested event.

    `account_exists` tells the owner that someone tried to register with the address, with a reset link."""
    kind: EmailKind = "verify_email" if mail == "verify_email" else "reset_password"
    if user.email is None:
        raise Conflict("this account has no email address", code="no-email")
    now = rt.now()
    ttl = rt.settings.verify_email_ttl if kind == "verify_email" else rt.settings.reset_password_ttl
    await session.execute(delete(OneTimeToken).where(OneTimeToken.user_id == user.id, OneTimeToken.kind == kind,
                                                     OneTimeToken.used_at.is_(None)))
    token = new_secret()
    expires = now + timedelta(seconds=ttl)
    session.add(OneTimeToken(user_id=user.id, kind=kind, token_hash=digest(token), email=user.email,
                             created_at=now, expires_at=expires))
    path = "verify-email" if kind == "verify_email" else "reset-password"
    event = EmailRequested(user_id=user.id, email=user.email, kind=mail, token=token, expires_at=expires,
                           username=user.username, link=f"{rt.settings.link_base()}/{path}?token={token}")
    await add_event(session, event, subject=str(user.id))
    return event
