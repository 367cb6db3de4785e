"""Events of auth. It publishes through the outbox (the domain modules, same transaction as the change); identity
is the source other services replicate from. It consumes one event: `quark.user.suspended`, because the
user service decides suspension but only auth can refuse the login.

Consumed payloads are parsed with auth's own (unregistered) models; one that does not fit can never
succeed, so `event.payload(...)` dead-letters it at once instead of retrying.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from quark_auth.runtime import AuthRuntime
from quark_auth.schemas import (
    EmailRequested,
    IdentityLinked,
    IdentityUnlinked,
    PasswordChanged,
    PasswordResetForced,
    PhoneRemoved,
    PhoneVerified,
    RoleChanged,
    SessionsRevoked,
    SmsRequested,
    UserDeleted,
    UserLoggedIn,
    UserRegistered,
    UserSuspendedIn,
    UserVerified,
)
from quark_auth.suspension import apply_user_suspended
from quark_sdk.events import CloudEvent, Consumer, EventPayload

PUBLISHED: tuple[type[EventPayload], ...] = (
    UserRegistered,
    UserVerified,
    UserLoggedIn,
    PasswordChanged,
    RoleChanged,
    UserDeleted,
    SessionsRevoked,
    EmailRequested,
    PhoneVerified,
    PhoneRemoved,
    IdentityLinked,
    IdentityUnlinked,
    SmsRequested,
    PasswordResetForced,
)

suspensions = Consumer[AuthRuntime]("suspensions")  # quark.user.suspended → users.suspended_at, sessions revoked


@suspensions.on("quark.user.suspended")
async def on_user_suspended(rt: AuthRuntime, session: AsyncSession, event: CloudEvent) -> None:
    await apply_user_suspended(session, rt, event.payload(UserSuspendedIn), at=event.time)
