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


Username = Field(min_length=3, max_length=32, pattern=USERNAME_PATTERN,
                 description="3-32 letters, digits, '_', '.', '-'; starts and ends with a letter, digit or '_'")
PhoneNumber = Field(min_length=3, max_length=32, description="E.164 (+79991234567) or national with the "
                                                             "station's default region")
SmsCode = Field(min_length=6, max_length=10, description="the 6-digit code of the SMS")


class RegisterIn(Request):
    username: str = Username
    email: str | None = Field(default=None, min_length=3, max_length=254)
    phone: str | None = Field(default=None, min_length=3, max_length=32, description="E.164; a code is sent by SMS")
    password: str = Password
    display_name: str | None = Field(default=None, min_length=1, max_length=64)

    @model_validator(mode="after")
    def _email_or_phone(self) -> RegisterIn:
        if self.email is None and self.phone is None:
            raise ValueError("give an email address or a phone number (or both)")
        return self


class PhoneIn(Request):
    phone: str = PhoneNumber


class PhoneCodeIn(Request):
    phone: str = PhoneNumber
    code: str = SmsCode


class PhoneAttachIn(Request):
    phone: str = PhoneNumber
    password: str | None = Field(default=None, min_length=1, max_length=512,
                                 description="required when the account has a password")


class PasswordMaybeIn(Request):
    password: str | None = Field(default=None, min_length=1, max_length=512,
                                 description="required when the account has a password")


class SmsMfaIn(Request):
    enabled: bool
    password: str | None = Field(default=None, min_length=1, max_length=512,
                                 description="required when the account has a password")


class OidcAuthorizeIn(Request):
    redirect_uri: str = Field(min_length=8, max_length=2000,
                              description="where the provider sends the browser back (an allowed URL)")
    intent: Literal["login", "link"] = Field(default="login", description="link: add the provider to the "
                                                                          "caller's account (Bearer token needed)")


class OidcCallbackIn(Request):
    state: str = Field(min_length=10, max_length=128)
    code: str = Field(min_length=1, max_length=2048)


class OidcSignupIn(Request):
    signup_token: str = Field(min_length=10, max_length=128)
    username: str = Username
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
    reason: str | None = Field(default=None, max_length=500)  # kept in the audit event


class ReasonIn(Request):
    """An admin action's stated reason, carried in its audit event."""

    reason: str | None = Field(default=None, max_length=500)


# -- responses ----------------------------------------------------------------------------------


class UserOut(BaseModel):
    id: uuid.UUID
    username: str
    email: str | None
    display_name: str | None
    roles: list[str]
    permissions: list[str]
    email_verified: bool
    mfa_enabled: bool
    created_at: datetime
    suspended: bool = False
    phone: str | None = None  # E.164, once verified
    phone_verified: bool = False
    sms_mfa: bool = False  # SMS codes as second factor (only without TOTP)
    has_password: bool = True

    @classmethod
    def of(cls, user: User) -> UserOut:
        roles = user.role_names
        return cls(id=user.id, username=user.username, email=user.email, display_name=user.display_name,
                   roles=roles, permissions=rbac.permissions_for(roles), email_verified=user.email_verified,
                   mfa_enabled=user.mfa_enabled, created_at=user.created_at, suspended=user.suspended,
                   phone=user.verified_phone, phone_verified=user.phone_verified, sms_mfa=user.sms_mfa,
                   has_password=user.password_hash is not None)


class UserPage(Page[UserOut]):
    pass


class AdminSessionOut(BaseModel):
    """One of a user's sessions as an admin sees it (no tokens)."""

    id: uuid.UUID
    created_at: datetime
    last_used_at: datetime
    expires_at: datetime
    revoked_at: datetime | None
    revoked_reason: str | None
    ip: str | None
    user_agent: str | None
    mfa: bool

    @classmethod
    def of(cls, row: LoginSession) -> AdminSessionOut:
        return cls(id=row.id, created_at=row.created_at, last_used_at=row.last_used_at, expires_at=row.expires_at,
                   revoked_at=row.revoked_at, revoked_reason=row.revoked_reason, ip=row.ip,
                   user_agent=row.user_agent, mfa=row.mfa)


class AdminUserOut(UserOut):
    """What the console's user page shows: the account plus its security state."""

    suspended_at: datetime | None = None
    password_reset_required: bool = False
    last_login_at: datetime | None = None
    active_sessions: int = 0
    sessions: list[AdminSessionOut] = Field(default_factory=list)  # the newest 20, revoked ones included
    role_grants: dict[str, str | None] = Field(default_factory=dict)  # role -> who granted it


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
    channel: Literal["totp", "sms"] = "totp"  # sms: a code was sent to the verified phone

    @classmethod
    def of(cls, challenge: MfaChallenge) -> MfaRequiredOut:
        return cls(mfa_token=challenge.mfa_token, expires_in=challenge.expires_in,
                   channel="sms" if challenge.channel == "sms" else "totp")


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


class ProviderOut(BaseModel):
    name: str
    display_name: str
    kind: Literal["oidc", "oauth2"]


class ProvidersOut(BaseModel):
    items: list[ProviderOut]


class AuthorizeOut(BaseModel):
    authorization_url: str
    state: str
    expires_in: int


class IdentityOut(BaseModel):
    provider: str
    subject: str
    email: str | None
    email_verified: bool
    created_at: datetime
    last_used_at: datetime


class IdentitiesOut(BaseModel):
    items: list[IdentityOut]


class SignupRequiredOut(BaseModel):
    """First sign-in with this provider account: the person chooses a username (`POST /oidc/signup`)."""

    signup_required: Literal[True] = True
    signup_token: str
    expires_in: int
    provider: str
    suggested_username: str | None
    display_name: str | None
    email: str | None
    email_verified: bool


class LinkedOut(BaseModel):
    linked: Literal[True] = True
    identity: IdentityOut


# -- events (other services replicate these schemas: add fields, never change or remove) ------------


@event_type("quark.auth.user_registered")
class UserRegistered(EventPayload):
    """An account was created (by registration, a provider's first sign-in or `quark create-admin`); `email`
    is None for an account registered by phone or by a provider that gave none."""

    user_id: uuid.UUID
    username: str
    email: str | None
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
    reason: str | None = None


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
    note: str | None = None  # the admin's stated reason, when one was given


@event_type("quark.auth.password_reset_forced")
class PasswordResetForced(EventPayload):
    """An admin forced a password reset (audit trail): the password no longer works, every session ended,
    and a reset link was mailed (through `quark.auth.email_requested`)."""

    user_id: uuid.UUID
    username: str
    actor_id: str
    reason: str | None = None
    revoked: int


@event_type("quark.auth.phone_verified")
class PhoneVerified(EventPayload):
    """A user proved they hold this phone number (registration, attaching or changing it)."""

    user_id: uuid.UUID
    username: str
    phone: str
    previous_phone: str | None = None


@event_type("quark.auth.phone_removed")
class PhoneRemoved(EventPayload):
    """A user removed their phone number."""

    user_id: uuid.UUID
    username: str


@event_type("quark.auth.identity_linked")
class IdentityLinked(EventPayload):
    """A provider account (OIDC / OAuth2) was linked to a user (first sign-in or linking in settings)."""

    user_id: uuid.UUID
    provider: str
    subject: str


@event_type("quark.auth.identity_unlinked")
class IdentityUnlinked(EventPayload):
    """A user unlinked a provider account."""

    user_id: uuid.UUID
    provider: str
    subject: str


@event_type("quark.auth.sms_requested")
class SmsRequested(EventPayload):
    """An SMS must be sent (the mailer's input). Carries the live code: only the mailer may read it
    (NATS permissions, like `email_requested`)."""

    user_id: uuid.UUID | None
    phone: str
    kind: Literal["verify_phone", "login_code", "mfa_code"]
    code: str
    expires_at: datetime
    username: str | None = None


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
