"""Suspension, decided by the user service (`quark.user.suspended`), enforced here."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession

from quark_auth.common import (
    log,
)
from quark_auth.models import User
from quark_auth.revocations import restore_account, revoke_account
from quark_auth.runtime import AuthRuntime
from quark_auth.schemas import (
    SessionsRevoked,
    UserSuspendedIn,
)
from quark_auth.sessions import revoke_all_at
from quark_sdk.outbox import add_event


async def apply_user_suspended(session: AsyncSession, rt: AuthRuntime, data: UserSuspendedIn, *,
                               at: datetime) -> None:
    """Consumer, inside its transaction: mark the account (un)suspended; on suspension end its sessions
    and revoke its access tokens in every module (the revocation list), on unsuspension lift that.

    `at` is the event's time: an older event delivered late (redelivery after a newer one) changes
    nothing. An unknown user (deleted meanwhile) is ignored."""
    user = await session.get(User, data.user_id, with_for_update=True)
    if user is None:
        log.info("suspension event for unknown user %s ignored", data.user_id)
        return
    if user.suspension_changed_at is not None and at < user.suspension_changed_at:
        log.info("stale suspension event for user %s ignored", data.user_id)
        return
    user.suspension_changed_at = at
    if not data.suspended:
        user.suspended_at = None
        await restore_account(rt, user.id)
        return
    if user.suspended_at is None:
        user.suspended_at = at
    await revoke_account(rt, user.id)
    revoked = await revoke_all_at(session, datetime.now(UTC), user.id, reason="suspended")
    await add_event(session, SessionsRevoked(user_id=user.id, reason="suspended",
                                             actor_id=(data.actor_id or "user-service")[:64], revoked=revoked),
                    subject=str(user.id))
