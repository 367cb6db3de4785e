"""TOTP second factor: enrolment, disabling, and the second login step (TOTP or recovery code)."""

from __future__ import annotations

import base64
import hmac
import io
import json
import re
import secrets
import uuid
from dataclasses import asdict, dataclass
from typing import Any

import pyotp
import segno
from sqlalchemy import delete, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from quark_auth.accounts import check_password
from quark_auth.common import (
    SUSPENDED,
    AccountSuspended,
    digest,
    get_user,
    new_secret,
)
from quark_auth.lockout import clear_failures, guess, record_failure
from quark_auth.models import RecoveryCode, User
from quark_auth.phone import queue_code, reserve_send, take_code
from quark_auth.runtime import AuthRuntime
from quark_auth.sessions import IssuedTokens, start_session
from quark_sdk.errors import (
    Conflict,
    InvalidInput,
    NotFound,
    Unauthenticated,
)


@dataclass
class _Challenge:
    """What an MFA challenge remembers (in Valkey, under the digest of its token) between the two steps."""

    user_id: str
    ip: str | None
    user_agent: str | None


@dataclass(frozen=True)
class MfaChallenge:
    """The answer to a first factor when 2FA is on (shaped by `schemas.MfaRequiredOut`)."""

    mfa_token: str
    expires_in: int
    channel: str = "totp"  # or "sms": the code was sent by SMS (no TOTP on the account)


async def start_challenge(session: AsyncSession, rt: AuthRuntime, user: User, *, ip: str | None,
                          user_agent: str | None) -> MfaChallenge:
    """A random token for the second step, kept (hashed) in Valkey for `mfa_challenge_ttl`. With the SMS
    second factor (no TOTP), a code is sent to the verified phone (the send limits apply)."""
    s = rt.settings
    token = new_secret()
    challenge = _Challenge(user_id=str(user.id), ip=ip, user_agent=user_agent)
    if user.sms_mfa and user.phone is not None:
        await reserve_send(rt, phone=user.phone, ip=ip, account=str(user.id))
        async with session.begin():
            await queue_code(session, rt, purpose="mfa", subject=digest(token), phone=user.phone, user_id=user.id,
                             username=user.username)
    await rt.redis.set(rt.key("mfa", digest(token)), json.dumps(asdict(challenge)), ex=s.mfa_challenge_ttl)
    return MfaChallenge(mfa_token=token, expires_in=s.mfa_challenge_ttl, channel="sms" if user.sms_mfa else "totp")


def _totp_counter(rt: AuthRuntime, secret: str, code: str, last: int | None) -> int | None:
    """The time step `code` matches (current ±1 step), if it is newer than the last accepted one."""
    code = code.strip().replace(" ", "")
    if not code.isdigit() or len(code) != 6:
        return None
    totp = pyotp.TOTP(secret)
    base = totp.timecode(rt.clock())
    for offset in (0, -1, 1):
        counter = base + offset
        if hmac.compare_digest(totp.generate_otp(counter), code) and (last is None or counter > last):
            return counter
    return None


def _normalize_recovery(code: str) -> str:
    return re.sub(r"[\s-]", "", code).upper()


async def login_mfa(session: AsyncSession, rt: AuthRuntime, *, mfa_token: str, code: str | None,
                    recovery_code: str | None) -> IssuedTokens:
    """The second step: a TOTP code or a recovery code (or, without TOTP, the code sent by SMS). A wrong one
    counts in the account's lockout like a wrong password (and `mfa_max_attempts` end the challenge); only
    the completed login clears the count."""
    s = rt.settings
    key = rt.key("mfa", digest(mfa_token))
    raw = await rt.redis.get(key)
    if raw is None:
        raise Unauthenticated("MFA token invalid or expired; log in again", code="mfa-token-invalid")
    challenge = _Challenge(**json.loads(raw))
    account = challenge.user_id
    async with guess(rt, account):  # parallel codes are bounded by the lockout like parallel passwords
        async with session.begin():
            user = await session.get(User, uuid.UUID(challenge.user_id))
        if user is None or not (user.totp_secret is not None or user.sms_mfa):
            await rt.redis.delete(key)
            raise Unauthenticated("MFA token invalid or expired; log in again", code="mfa-token-invalid")

        counter: int | None = None
        recovery_hash: str | None = None
        valid = False
        sms = user.totp_secret is None
        if sms:  # the SMS second factor: the code sent for this challenge (recovery codes belong to TOTP)
            valid = code is not None and await take_code(rt, purpose="mfa", subject=digest(mfa_token),
                                                         code=code) is not None
        elif code is not None and user.totp_secret is not None:
            counter = _totp_counter(rt, user.totp_secret, code, user.totp_last_counter)
            valid = counter is not None
        elif recovery_code is not None:
            recovery_hash = digest(_normalize_recovery(recovery_code))
            async with session.begin():
                valid = (await session.scalar(select(RecoveryCode.id).where(
                    RecoveryCode.user_id == user.id, RecoveryCode.code_hash == recovery_hash,
                    RecoveryCode.used_at.is_(None)))) is not None
        if not valid:
            attempts = int(await rt.redis.incr(key + ":attempts"))
            await rt.redis.expire(key + ":attempts", s.mfa_challenge_ttl)
            if attempts >= s.mfa_max_attempts:
                await rt.redis.delete(key)
            await record_failure(rt, account)
            raise Unauthenticated("the code is not correct", code="invalid-code")
    if not await rt.redis.delete(key):  # a concurrent request consumed this challenge first
        raise Unauthenticated("MFA token invalid or expired; log in again", code="mfa-token-invalid")
    async with session.begin():
        await session.refresh(user)
        if user.suspended:
            raise AccountSuspended(SUSPENDED)
        done: Any = None
        if sms:
            pass  # the SMS code was consumed when taken (single use)
        elif counter is not None:
            # Conditional update: the same code can never complete two logins (replay protection).
            done = await session.execute(
                update(User).where(User.id == user.id, or_(User.totp_last_counter.is_(None),
                                                            User.totp_last_counter < counter))
                .values(totp_last_counter=counter))
        else:
            done = await session.execute(
                update(RecoveryCode).where(RecoveryCode.user_id == user.id, RecoveryCode.code_hash == recovery_hash,
                                           RecoveryCode.used_at.is_(None)).values(used_at=rt.now()))
        if done is not None and done.rowcount != 1:
            raise Unauthenticated("the code was already used", code="invalid-code")
        tokens = await start_session(session, rt, user, ip=challenge.ip, user_agent=challenge.user_agent, mfa=True)
    await clear_failures(rt, account)
    return tokens


# -- enrolment --------------------------------------------------------------------------------------------


def otpauth_uri(rt: AuthRuntime, user: User, secret: str) -> str:
    return pyotp.TOTP(secret).provisioning_uri(name=user.username, issuer_name=rt.settings.totp_issuer)


async def totp_setup(session: AsyncSession, rt: AuthRuntime, user_id: uuid.UUID) -> tuple[User, str]:
    """Start enrolment: a fresh secret, kept pending until a code from it is confirmed."""
    async with session.begin():
        user = await get_user(session, user_id)
        if user.totp_secret is not None:
            raise Conflict("two-factor authentication is already enabled", code="mfa-enabled")
        secret = pyotp.random_base32()
        user.totp_pending_secret = secret
    return user, secret


async def totp_qr_png(session: AsyncSession, rt: AuthRuntime, user_id: uuid.UUID) -> bytes:
    async with session.begin():
        user = await get_user(session, user_id)
    if user.totp_pending_secret is None:
        raise NotFound("no two-factor enrolment in progress; call /2fa/setup first")
    out = io.BytesIO()
    segno.make(otpauth_uri(rt, user, user.totp_pending_secret), error="m").save(out, kind="png", scale=6, border=4)
    return out.getvalue()


def _recovery_code() -> str:
    raw = base64.b32encode(secrets.token_bytes(10)).decode()  # 80 bits, 16 characters
    return "-".join(raw[i:i + 4] for i in range(0, 16, 4))


async def totp_confirm(session: AsyncSession, rt: AuthRuntime, user_id: uuid.UUID, *, code: str) -> list[str]:
    s = rt.settings
    async with session.begin():
        user = await get_user(session, user_id)
    if user.totp_secret is not None:
        raise Conflict("two-factor authentication is already enabled", code="mfa-enabled")
    if user.totp_pending_secret is None:
        raise Conflict("no two-factor enrolment in progress; call /2fa/setup first", code="mfa-not-started")
    await rt.limit(f"sensitive:{user.id}", limit=s.sensitive_action_limit, window=s.sensitive_action_window,
                   detail="too many attempts; try again later")
    counter = _totp_counter(rt, user.totp_pending_secret, code, None)
    if counter is None:
        raise InvalidInput("the code is not correct", field="code", code="invalid-code")
    codes = [_recovery_code() for _ in range(s.recovery_code_count)]
    async with session.begin():
        done = await session.execute(
            update(User).where(User.id == user.id, User.totp_secret.is_(None),
                               User.totp_pending_secret == user.totp_pending_secret)
            .values(totp_secret=user.totp_pending_secret, totp_pending_secret=None, totp_last_counter=counter,
                    totp_enabled_at=rt.now()))
        if done.rowcount != 1:  # type: ignore[attr-defined]
            raise Conflict("enrolment changed meanwhile; start again", code="mfa-not-started")
        await session.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user.id))
        session.add_all([RecoveryCode(user_id=user.id, code_hash=digest(_normalize_recovery(c))) for c in codes])
    return codes


async def totp_disable(session: AsyncSession, rt: AuthRuntime, user_id: uuid.UUID, *, password: str) -> None:
    async with session.begin():
        user = await get_user(session, user_id)
    if user.totp_secret is None:
        raise Conflict("two-factor authentication is not enabled", code="mfa-disabled")
    await check_password(session, rt, user, password)
    async with session.begin():
        await session.execute(update(User).where(User.id == user.id).values(
            totp_secret=None, totp_pending_secret=None, totp_last_counter=None, totp_enabled_at=None))
        await session.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user.id))


async def regenerate_recovery_codes(session: AsyncSession, rt: AuthRuntime, user_id: uuid.UUID, *,
                                    password: str) -> list[str]:
    """A fresh set of recovery codes (password required); every earlier code stops working."""
    s = rt.settings
    async with session.begin():
        user = await get_user(session, user_id)
    if user.totp_secret is None:
        raise Conflict("two-factor authentication is not enabled", code="mfa-disabled")
    await check_password(session, rt, user, password)
    codes = [_recovery_code() for _ in range(s.recovery_code_count)]
    async with session.begin():
        await session.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user.id))
        session.add_all([RecoveryCode(user_id=user.id, code_hash=digest(_normalize_recovery(c))) for c in codes])
    return codes
