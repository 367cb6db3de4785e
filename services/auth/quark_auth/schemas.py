"""Request/response models of the auth API and the payloads of the events it publishes.

Request models forbid unknown fields and bound every string, so malformed or oversized input is a
422 problem before any service code runs. The password *policy* (length in bytes, not the username, ...)
is checked in service code because it needs the other fields and gives one clear message.
"""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from quark_auth import rbac
from quark_sdk.events import EventPayload, event_type
from quark_sdk.pagination import Page

if TYPE_CHECKING:
    from quark_auth.mfa import MfaChallenge
    from quark_auth.models import LoginSession, User
    from quark_auth.sessions import IssuedTokens

USERNAME_PATTERN = r"^[A-Za-z0-9_](?:[A-Za-z0-9_.-]{1,30})[A-Za-z0-9_]$"
# Passwords are bounded here by characters (cheap DoS guard); the policy bounds them by bytes.
Password = Field(min_length=1, max_length=512)


# PostgreSQL text cannot hold NUL, and a lone surrogate cannot be encoded to UTF-8 (JSON can carry both).
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def _storable(value: Any) -> bool:
    if isinstance(value, str):
        return _UNSTORABLE.search(value) is None
    if isinstance(value, dict):
        return all(_storable(k) and _storable(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return all(_storable(v) for v in value)
    return True


class Request(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)

    @model_validator(mode="before")
    @classmethod
    def _no_unstorable_text(cls, data: Any) -> Any:
        """A NUL or a lone surrogate anywhere is a 422 here, not a database error (a 500) later."""
        if not _storable(data):
            raise ValueError("text contains NUL characters or lone surrogates")
        return data


# -- accounts ---------------------------------------------------------------------------------


class RegisterIn(Request):
    username: str = Field(min_length=3, max_length=32, pattern=USERNAME_PATTERN,
                          description="3-32 letters, digits, '_', '.', '-'; starts and ends with a letter, "
                                      "digit or '_'")
    email: str = Field(min_length=3, max_length=254)
    password: str = Password
    display_name: str | None = Field(default=None, min_length=1, max_length=64)


class LoginIn(Request):
    login: str = Field(min_length=1, max_length=254, description="username or email")
    password: str = Password


class MfaLoginIn(Request):
    mfa_token: str = Field(min_length=10, max_length=128)
    code: str | None = Field(default=None, min_length=6, max_length=10)
    recovery_code: str | None = Field(default=None, min_length=8, max_length=32)

    @model_validator(mode="after")
    def _one_of(self) -> MfaLoginIn:
        if (self.code is None) == (self.recovery_code is None):
            raise ValueError("give exactly one of 'code' or 'recovery_code'")
        return self


class RefreshIn(Request):
    refresh_token: str = Field(min_length=10, max_length=128)


class LogoutIn(Request):
    refresh_token: str | None = Field(default=None, min_length=10, max_length=128)


class PasswordChangeIn(Request):
    current_password: str = Password
    new_password: str = Password


class PasswordIn(Request):
    password: str = Password


class TokenIn(Request):
    token: str = Field(min_length=10, max_length=128)


class EmailIn(Request):
    email: str = Field(min_length=3, max_length=254)


class PasswordResetConfirmIn(Request):
    token: str = Field(min_length=10, max_length=128)
    new_password: str = Password


class CodeIn(Request):
    code: str = Field(min_length=6, max_length=10)


class RoleIn(Request):
    role: str = Field(min_length=1, max_length=32)


# -- responses ----------------------------------------------------------------------------------


class UserOut(BaseModel):
    id: uuid.UUID
    username: str
    email: str
    display_name: str | None
    roles: list[str]
    permissions: list[str]
    email_verified: bool
    mfa_enabled: bool
    created_at: datetime
    suspended: bool = False

    @classmethod
    def of(cls, user: User) -> UserOut:
        roles = user.role_names
        return cls(id=user.id, username=user.username, email=user.email, display_name=user.display_name,
                   roles=roles, permissions=rbac.permissions_for(roles), email_verified=user.email_verified,
                   mfa_enabled=user.mfa_enabled, created_at=user.created_at, suspended=user.suspended)


class UserPage(Page[UserOut]):
    pass


class TokensOut(BaseModel):
    token_type: Literal["Bearer"] = "Bearer"  # noqa: S105 - the token type name, not a secret
    access_token: str
    expires_in: int
    refresh_token: str
    refresh_expires_in: int
    session_id: uuid.UUID
    user: UserOut

    @classmethod
    def of(cls, tokens: IssuedTokens) -> TokensOut:
        return cls(access_token=tokens.access_token, expires_in=tokens.expires_in,
                   refresh_token=tokens.refresh_token, refresh_expires_in=tokens.refresh_expires_in,
                   session_id=tokens.session_id, user=UserOut.of(tokens.user))


class MfaRequiredOut(BaseModel):
    mfa_required: Literal[True] = True
    mfa_token: str
    expires_in: int

    @classmethod
    def of(cls, challenge: MfaChallenge) -> MfaRequiredOut:
        return cls(mfa_token=challenge.mfa_token, expires_in=challenge.expires_in)


class SessionOut(BaseModel):
    id: uuid.UUID
    created_at: datetime
    last_used_at: datetime
    expires_at: datetime
    ip: str | None
    user_agent: str | None
    mfa: bool
    current: bool

    @classmethod
    def of(cls, row: LoginSession, *, current: uuid.UUID) -> SessionOut:
        return cls(id=row.id, created_at=row.created_at, last_used_at=row.last_used_at, expires_at=row.expires_at,
                   ip=row.ip, user_agent=row.user_agent, mfa=row.mfa, current=row.id == current)


class SessionPage(Page[SessionOut]):
    pass


class RevokedOut(BaseModel):
    revoked: int


class TotpSetupOut(BaseModel):
    secret: str
    otpauth_uri: str
    qr_png_url: str


class RecoveryCodesOut(BaseModel):
    recovery_codes: list[str]


class AcceptedOut(BaseModel):
    status: Literal["accepted"] = "accepted"


# -- events (other services replicate these schemas: add fields, never change or remove) ------------


@event_type("quark.auth.user_registered")
class UserRegistered(EventPayload):
    """An account was created (by registration or `quark create-admin`)."""

    user_id: uuid.UUID
    username: str
    email: str
    display_name: str | None
    roles: list[str]
    created_at: datetime


@event_type("quark.auth.user_verified")
class UserVerified(EventPayload):
    """A user proved they own their email address."""

    user_id: uuid.UUID
    username: str


@event_type("quark.auth.user_logged_in")
class UserLoggedIn(EventPayload):
    """A login completed (after the 2FA step, when enabled) and a session was created."""

    user_id: uuid.UUID
    username: str
    ip: str | None
    user_agent: str | None
    at: datetime
    session_id: uuid.UUID | None = None
    mfa: bool = False


@event_type("quark.auth.password_changed")
class PasswordChanged(EventPayload):
    """A password was changed or reset; the user's other sessions were revoked."""

    user_id: uuid.UUID
    reason: Literal["changed", "reset"] = "changed"


@event_type("quark.auth.role_changed")
class RoleChanged(EventPayload):
    """A role was granted or revoked (audit trail); actor_id is the admin's user id or 'cli'."""

    user_id: uuid.UUID
    username: str
    role: str
    action: Literal["granted", "revoked"]
    actor_id: str


@event_type("quark.auth.user_deleted")
class UserDeleted(EventPayload):
    """An account was deleted; other services drop or anonymise what they keep about it."""

    user_id: uuid.UUID
    username: str


@event_type("quark.auth.sessions_revoked")
class SessionsRevoked(EventPayload):
    """Every session of a user was ended by someone else (audit trail; services holding live connections of
    the user, e.g. WebSockets, may close them). reason: `admin` (the admin endpoint, actor_id = the admin's
    user id), `role_revoked` (after a role revocation), `suspended` (actor_id = the suspending admin, as
    reported by the user service)."""

    user_id: uuid.UUID
    reason: Literal["admin", "role_revoked", "suspended"]
    actor_id: str
    revoked: int


@event_type("quark.auth.email_requested")
class EmailRequested(EventPayload):
    """An email must be sent (the mailer's input). Carries the live one-time token: whoever can read
    `quark.auth.email_requested` can verify the address or reset the password (docs/auth.md, "Who may read
    email_requested")."""

    user_id: uuid.UUID
    email: str
    # account_exists: someone tried to register with this address; the token and link reset the password.
    kind: Literal["verify_email", "reset_password", "account_exists"]
    token: str
    expires_at: datetime
    username: str | None = None
    link: str | None = None


# -- events consumed (this service's own reading of other services' payloads; not registered) ----------


class Consumed(BaseModel):
    """Unknown fields are ignored (producers add fields); a payload that does not fit is dead-lettered."""

    model_config = ConfigDict(extra="ignore")


class UserSuspendedIn(Consumed):
    """`quark.user.suspended` of the user service: an admin suspended (`suspended: true`) or reinstated an
    account."""

    user_id: uuid.UUID
    suspended: bool
    reason: str | None = None
    actor_id: str | None = None
