"""Phone flows: confirming a registration by SMS, attaching / changing / removing the caller's phone, signing
in with phone + SMS code (passwordless), and the SMS second factor switch.

The primitives (E.164, codes, send limits) are in `phone.py`. Answers never say whether a number has an
account: asking for a sign-in code always answers 202 after the same limit counting, a number verified by
another account is "sent" a code that never leaves, and every wrong or missing code is the same 401/422.
"""

from __future__ import annotations

import uuid

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from quark_auth.accounts import check_password
from quark_auth.common import get_user, log
from quark_auth.lockout import account_key, guess, record_failure
from quark_auth.mfa import MfaChallenge
from quark_auth.models import ExternalIdentity, User
from quark_auth.phone import drop_code, normalize_phone, queue_code, reserve_send, take_code
from quark_auth.runtime import AuthRuntime
from quark_auth.schemas import PhoneRemoved, PhoneVerified
from quark_auth.sessions import IssuedTokens
from quark_auth.signin import finish_login
from quark_sdk.errors import Conflict, InvalidInput, PermissionDenied, QuarkError, Unauthenticated
from quark_sdk.outbox import add_event

WRONG_CODE = "the code is not correct or has expired; ask for a new one"


class PhoneLoginDisabled(QuarkError):
    status, code, title = 403, "phone-code-login-disabled", "Sign-in by SMS code is switched off"


async def reauthenticate(session: AsyncSession, rt: AuthRuntime, user: User, password: str | None) -> None:
    """The password re-check of a sensitive action, for accounts that have one; rate limited either way."""
    if user.password_hash is None:
        s = rt.settings
        await rt.limit(f"sensitive:{user.id}", limit=s.sensitive_action_limit, window=s.sensitive_action_window,
                       detail="too many attempts; try again later")
        return
    if password is None:
        raise PermissionDenied("this action needs your password", code="wrong-password")
    await check_password(session, rt, user, password)


async def other_sign_in_methods(session: AsyncSession, user: User, *, without: str) -> bool:
    """Whether `user` keeps a way to sign in once `without` (`phone` or `identity:<id>`) is gone: a password,
    a verified phone (passwordless), or another linked provider."""
    if user.password_hash is not None:
        return True
    if without != "phone" and user.phone_verified:
        return True
    query = select(func.count()).select_from(ExternalIdentity).where(ExternalIdentity.user_id == user.id)
    if without.startswith("identity:"):
        query = query.where(ExternalIdentity.id != uuid.UUID(without.partition(":")[2]))
    return bool(await session.scalar(query))


async def _verify(session: AsyncSession, rt: AuthRuntime, user_id: uuid.UUID, phone: str) -> User:
    """Inside the caller's transaction: the phone becomes the account's verified number."""
    user = await session.get(User, user_id, with_for_update=True)
    if user is None:
        raise Unauthenticated(WRONG_CODE, code="invalid-code")
    previous = user.verified_phone
    user.phone, user.phone_verified_at = phone, rt.now()
    try:
        await session.flush()
    except IntegrityError:  # only whoever holds the number's code gets here: nothing is revealed
        raise Conflict("this phone number belongs to another account", code="phone-taken") from None
    await add_event(session, PhoneVerified(user_id=user.id, username=user.username, phone=phone,
                                           previous_phone=previous if previous != phone else None),
                    subject=str(user.id))
    return user


async def confirm_signup(session: AsyncSession, rt: AuthRuntime, *, phone: str, code: str, ip: str | None,
                         user_agent: str | None) -> IssuedTokens | MfaChallenge:
    """The SMS code of a registration by phone: the number is verified and the person is signed in."""
    number = normalize_phone(phone, rt)
    pending = await take_code(rt, purpose="signup", subject=number, code=code)
    if pending is None or pending.user_id is None:
        raise Unauthenticated(WRONG_CODE, code="invalid-code")
    async with session.begin():
        user = await _verify(session, rt, uuid.UUID(pending.user_id), number)
    return await finish_login(session, rt, user, account=str(user.id), ip=ip, user_agent=user_agent)


async def attach(session: AsyncSession, rt: AuthRuntime, user_id: uuid.UUID, *, phone: str, password: str | None,
                 ip: str | None) -> None:
    """Send a code to a new number of the caller (adding or changing their phone); it is theirs once confirmed.

    A number another account has verified is treated alike, but no SMS leaves (its code never comes)."""
    async with session.begin():
        user = await get_user(session, user_id)
    number = normalize_phone(phone, rt)
    if number == user.verified_phone:
        raise Conflict("this is already your phone number", code="already-verified")
    await reauthenticate(session, rt, user, password)
    await reserve_send(rt, phone=number, ip=ip, account=str(user.id))
    async with session.begin():
        taken = await session.scalar(select(User.id).where(User.phone == number, User.phone_verified_at.is_not(None),
                                                           User.id != user.id))
        if taken is None:
            await queue_code(session, rt, purpose="attach", subject=str(user.id), phone=number, user_id=user.id,
                             username=user.username, ip=ip)
        else:
            log.info("phone attach for user %s: number already verified elsewhere; no SMS sent", user.id)


async def confirm_attach(session: AsyncSession, rt: AuthRuntime, user_id: uuid.UUID, *, code: str) -> User:
    pending = await take_code(rt, purpose="attach", subject=str(user_id), code=code)
    if pending is None:
        raise InvalidInput(WRONG_CODE, field="code", code="invalid-code")
    async with session.begin():
        return await _verify(session, rt, user_id, pending.phone)


async def remove(session: AsyncSession, rt: AuthRuntime, user_id: uuid.UUID, *, password: str | None) -> User:
    async with session.begin():
        user = await get_user(session, user_id)
    if user.phone is None:
        raise Conflict("this account has no phone number", code="no-phone")
    await reauthenticate(session, rt, user, password)
    async with session.begin():
        user = await get_user(session, user_id)
        if not await other_sign_in_methods(session, user, without="phone"):
            raise Conflict("the phone is this account's only way to sign in; link a provider or set a password "
                           "first", code="last-sign-in-method")
        user.phone, user.phone_verified_at, user.phone_mfa = None, None, False
        await add_event(session, PhoneRemoved(user_id=user.id, username=user.username), subject=str(user.id))
    await drop_code(rt, purpose="attach", subject=str(user.id))
    return user


async def request_login_code(session: AsyncSession, rt: AuthRuntime, *, phone: str, ip: str | None,
                             user_agent: str | None) -> None:
    """Always "accepted" after the same counting: a code leaves only for a verified, unsuspended account."""
    s = rt.settings
    if not s.phone_passwordless:
        raise PhoneLoginDisabled("this station does not sign in by SMS code; use your password")
    await rt.limit(f"login:ip:{ip or '-'}", limit=s.login_ip_limit, window=s.login_ip_window,
                   detail="too many login attempts from this address; try again later")
    number = normalize_phone(phone, rt)
    async with session.begin():
        user = (await session.scalars(select(User).where(User.phone == number,
                                                         User.phone_verified_at.is_not(None)))).first()
    await reserve_send(rt, phone=number, ip=ip, account=str(user.id) if user is not None else None)
    if user is None or user.suspended:
        return
    async with session.begin():
        await queue_code(session, rt, purpose="login", subject=number, phone=number, user_id=user.id,
                         username=user.username, ip=ip, user_agent=user_agent)


async def login_with_code(session: AsyncSession, rt: AuthRuntime, *, phone: str, code: str, ip: str | None,
                          user_agent: str | None) -> IssuedTokens | MfaChallenge:
    """Phone + SMS code as the first factor; a wrong code counts in the account's lockout like a password."""
    s = rt.settings
    if not s.phone_passwordless:
        raise PhoneLoginDisabled("this station does not sign in by SMS code; use your password")
    await rt.limit(f"login:ip:{ip or '-'}", limit=s.login_ip_limit, window=s.login_ip_window,
                   detail="too many login attempts from this address; try again later")
    number = normalize_phone(phone, rt)
    async with session.begin():
        user = (await session.scalars(select(User).where(User.phone == number,
                                                         User.phone_verified_at.is_not(None)))).first()
    account = account_key(user, number)
    async with guess(rt, account):  # parallel codes are bounded by the lockout like parallel passwords
        pending = await take_code(rt, purpose="login", subject=number, code=code)
        if pending is None or user is None or pending.user_id != str(user.id):
            await record_failure(rt, account)
            raise Unauthenticated(WRONG_CODE, code="invalid-code")
    return await finish_login(session, rt, user, account=account, ip=ip, user_agent=user_agent)


async def set_sms_mfa(session: AsyncSession, rt: AuthRuntime, user_id: uuid.UUID, *, enabled: bool,
                      password: str | None) -> User:
    """SMS codes as the second factor: only with a verified phone and without TOTP (which stays stronger)."""
    async with session.begin():
        user = await get_user(session, user_id)
    if enabled and not user.phone_verified:
        raise Conflict("verify a phone number first", code="no-phone")
    if enabled and user.totp_secret is not None:
        raise Conflict("an authenticator app (TOTP) is already your second factor", code="mfa-enabled")
    await reauthenticate(session, rt, user, password)
    async with session.begin():
        await session.execute(update(User).where(User.id == user.id).values(phone_mfa=enabled))
        return await get_user(session, user_id)
