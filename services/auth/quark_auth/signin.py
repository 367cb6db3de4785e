"""Sign-in: the password as first factor, then `finish_login` — the one step every sign-in method shares
once its first factor has succeeded (the suspension check, the second factor or a session, and clearing
the failure count). A new method (phone code, OIDC) verifies its own factor, counts its failures with
`lockout.record_failure` and ends in `finish_login`."""

from __future__ import annotations

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from quark_auth.common import INVALID_CREDENTIALS, SUSPENDED, AccountSuspended, user_by_login
from quark_auth.lockout import account_key, clear_failures, guess, record_failure
from quark_auth.mfa import MfaChallenge, start_challenge
from quark_auth.models import User
from quark_auth.phone import looks_like_phone, normalize_phone
from quark_auth.runtime import AuthRuntime
from quark_auth.sessions import IssuedTokens, start_session
from quark_sdk.errors import Unauthenticated


async def login(session: AsyncSession, rt: AuthRuntime, *, login: str, password: str, ip: str | None,
                user_agent: str | None) -> IssuedTokens | MfaChallenge:
    s = rt.settings
    await rt.limit(f"login:ip:{ip or '-'}", limit=s.login_ip_limit, window=s.login_ip_window,
                   detail="too many login attempts from this address; try again later")
    number = normalize_phone(login, rt, field="login") if looks_like_phone(login) else None
    async with session.begin():
        user = await user_by_login(session, login, phone=number)
    account = account_key(user, number or login)
    async with guess(rt, account):
        # The unknown-user path pays for one bcrypt check too (against a dummy hash): same time, same answer.
        ok = await rt.hasher.verify(password, user.password_hash if user is not None else None)
        if not ok or user is None:
            await record_failure(rt, account)
            raise Unauthenticated(INVALID_CREDENTIALS, code="invalid-credentials")
    if user.suspended:  # only told to whoever knows the password
        raise AccountSuspended(SUSPENDED)
    if user.password_hash is not None and rt.hasher.needs_rehash(user.password_hash):
        new_hash = await rt.hasher.hash(password)
        async with session.begin():
            await session.execute(update(User).where(User.id == user.id).values(password_hash=new_hash))
    return await finish_login(session, rt, user, account=account, ip=ip, user_agent=user_agent)


async def finish_login(session: AsyncSession, rt: AuthRuntime, user: User, *, account: str, ip: str | None,
                       user_agent: str | None) -> IssuedTokens | MfaChallenge:
    """After a first factor: an MFA challenge (2FA enabled) or a session.

    Failures are forgotten only once the whole login has succeeded: with 2FA the first factor alone must
    not reset the count, or the second factor could be guessed without ever locking the account."""
    if user.mfa_enabled or user.sms_mfa:
        return await start_challenge(session, rt, user, ip=ip, user_agent=user_agent)
    async with session.begin():
        # Re-read (roles, suspension): a role revoked or a suspension applied while bcrypt ran counts.
        await session.refresh(user)
        if user.suspended:
            raise AccountSuspended(SUSPENDED)
        tokens = await start_session(session, rt, user, ip=ip, user_agent=user_agent, mfa=False)
    await clear_failures(rt, account)
    return tokens
