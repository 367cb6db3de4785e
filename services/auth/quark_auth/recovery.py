"""Email verification and password reset: one-time tokens sent by email."""

from __future__ import annotations

import asyncio
import uuid

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from quark_auth import passwords
from quark_auth.common import (
    EmailKind,
    InvalidToken,
    digest,
    get_user,
    log,
    log_email,
    normalize_email,
    queue_email,
)
from quark_auth.lockout import clear_failures
from quark_auth.models import OneTimeToken, User
from quark_auth.revocations import revoke_tokens_before_this_second
from quark_auth.runtime import AuthRuntime
from quark_auth.schemas import (
    PasswordChanged,
    UserVerified,
)
from quark_auth.sessions import revoke_all
from quark_sdk.errors import (
    Conflict,
)
from quark_sdk.outbox import add_event


async def request_verification(session: AsyncSession, rt: AuthRuntime, user_id: uuid.UUID) -> None:
    s = rt.settings
    async with session.begin():
        user = await get_user(session, user_id)
    if user.email is None:
        raise Conflict("this account has no email address", code="no-email")
    if user.email_verified:
        raise Conflict("email address is already verified", code="already-verified")
    await rt.limit(f"email:verify_email:{user.id}", limit=s.email_request_limit, window=s.email_request_window,
                   detail="too many verification emails requested; try again later")
    async with session.begin():
        event = await queue_email(session, rt, user, "verify_email")
    log_email(rt, event)


async def _take_token(session: AsyncSession, rt: AuthRuntime, token: str, kind: EmailKind) -> tuple[OneTimeToken, User]:
    """Inside the caller's transaction: the unused, unexpired token of `kind` and its user (row-locked)."""
    row = (await session.execute(
        select(OneTimeToken, User).join(User, User.id == OneTimeToken.user_id)
        .where(OneTimeToken.token_hash == digest(token), OneTimeToken.kind == kind).with_for_update()
    )).first()
    if row is None:
        raise InvalidToken("token is invalid or expired")
    record, user = row
    bound_to = (user.email or "").lower()  # bound to the address it was sent to
    if record.used_at is not None or record.expires_at <= rt.now() or record.email.lower() != bound_to:
        raise InvalidToken("token is invalid or expired")
    return record, user


async def confirm_verification(session: AsyncSession, rt: AuthRuntime, *, token: str) -> User:
    async with session.begin():
        record, user = await _take_token(session, rt, token, "verify_email")
        record.used_at = rt.now()
        if user.email_verified_at is None:
            user.email_verified_at = rt.now()
            await add_event(session, UserVerified(user_id=user.id, username=user.username), subject=str(user.id))
    return user


async def request_password_reset(session: AsyncSession, rt: AuthRuntime, *, email: str, ip: str | None) -> None:
    """Always "accepted", in the same time: whether the address has an account is never revealed (nor its
    rate limit). Both paths do the same lookups and counting, and the answer is padded to a fixed floor
    (`reset_request_floor`), which covers the one step only a real account takes (storing its token)."""
    s = rt.settings
    await rt.limit(f"email:ip:{ip or '-'}", limit=s.email_request_ip_limit, window=s.email_request_window,
                   detail="too many requests from this address; try again later")
    address = normalize_email(email)
    loop = asyncio.get_running_loop()
    started = loop.time()
    try:
        await _send_reset(session, rt, address)
    finally:
        await asyncio.sleep(max(0.0, s.reset_request_floor - (loop.time() - started)))


async def _send_reset(session: AsyncSession, rt: AuthRuntime, address: str) -> None:
    s = rt.settings
    async with session.begin():
        user = (await session.scalars(select(User).where(func.lower(User.email) == address.lower()))).first()
    # An unknown address is counted too (under its digest): the same Redis work as a real account.
    subject = str(user.id) if user is not None else "unknown-" + digest(address.lower())[:32]
    allowed = await rt.allowed(f"email:reset_password:{subject}", limit=s.email_request_limit,
                               window=s.email_request_window)
    if user is None:
        return
    if not allowed:
        log.info("password reset for user %s throttled", user.id)
        return
    async with session.begin():
        event = await queue_email(session, rt, user, "reset_password")
    log_email(rt, event)


async def confirm_password_reset(session: AsyncSession, rt: AuthRuntime, *, token: str, new_password: str) -> None:
    async with session.begin():
        _, user = await _take_token(session, rt, token, "reset_password")
    passwords.check_policy(new_password, username=user.username, email=user.email, field="new_password")
    new_hash = await rt.hasher.hash(new_password)
    async with session.begin():
        record, user = await _take_token(session, rt, token, "reset_password")  # again, locked: single use
        now = rt.now()
        record.used_at = now
        user.password_hash, user.password_changed_at = new_hash, now
        if user.email_verified_at is None:  # the reset link proved the address
            user.email_verified_at = now
            await add_event(session, UserVerified(user_id=user.id, username=user.username), subject=str(user.id))
        await revoke_all(session, rt, user.id, reason="password_reset")
        await add_event(session, PasswordChanged(user_id=user.id, reason="reset"), subject=str(user.id))
        # Last, before the commit: access tokens of the old password stop writing everywhere (and if
        # Valkey cannot be reached, the reset is not applied and the link stays usable).
        await revoke_tokens_before_this_second(rt, user.id)
    await clear_failures(rt, str(user.id))
