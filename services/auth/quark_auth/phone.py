"""Phone numbers: normalisation (E.164), one-time SMS codes and the limits on sending them.

A code is 6 digits, kept in Valkey only as an HMAC under a random per-code key (never the code itself),
for `phone_code_ttl` (5 min); it works once, and after `phone_code_attempts` (5) wrong tries it is gone
(a new one must be requested). Codes are keyed by what they are for (`purpose`) and whom: the number
(registration, sign-in) or the account (attaching a number, the SMS second factor).

Sending costs money and is the target of SMS pumping (toll fraud: bots requesting codes to premium
numbers), so every send is limited per number, per client address and per account, and each number has
a growing pause between sends (back-off). The limits are counted the same whether or not the number has
an account, so they reveal nothing. The SMS itself leaves as the outbox event `quark.auth.sms_requested`
(the mailer sends it), in the transaction that stores the code's account state.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import uuid
from dataclasses import asdict, dataclass
from datetime import timedelta
from typing import Literal

import phonenumbers
from sqlalchemy.ext.asyncio import AsyncSession

from quark_auth.common import log
from quark_auth.runtime import AuthRuntime, retry_after
from quark_auth.schemas import SmsRequested
from quark_sdk.errors import InvalidInput, RateLimited
from quark_sdk.outbox import add_event

Purpose = Literal["signup", "attach", "login", "mfa"]
SmsKind = Literal["verify_phone", "login_code", "mfa_code"]
KIND_OF: dict[Purpose, SmsKind] = {"signup": "verify_phone", "attach": "verify_phone", "login": "login_code",
                                   "mfa": "mfa_code"}


def normalize_phone(raw: str, rt: AuthRuntime, *, field: str = "phone") -> str:
    """E.164 (`+79991234567`); a national number only with the station's `phone_default_region`."""
    try:
        number = phonenumbers.parse(raw.strip(), rt.settings.phone_default_region)
    except phonenumbers.NumberParseException:
        raise InvalidInput("phone number is not valid; give it with its country code, e.g. +44 7911 123456",
                           field=field) from None
    if not phonenumbers.is_valid_number(number):
        raise InvalidInput("phone number is not valid; give it with its country code, e.g. +44 7911 123456",
                           field=field)
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def looks_like_phone(login: str) -> bool:
    """A login name that is a phone number: `+` and digits (spaces, dashes, brackets allowed)."""
    text = login.strip()
    return text.startswith("+") and any(c.isdigit() for c in text) and \
        all(c.isdigit() or c in " -()+." for c in text)


def mask(phone: str) -> str:
    """For logs: the country code and the last two digits."""
    return phone[:3] + "…" + phone[-2:]


@dataclass
class PendingCode:
    """What Valkey keeps for one code: its HMAC and key, and what it proves."""

    mac: str
    salt: str
    phone: str
    user_id: str | None
    expires: float  # on the runtime's clock (Valkey's TTL drops the key at about the same time)
    ip: str | None = None
    user_agent: str | None = None


def _mac(salt: str, code: str) -> str:
    return hmac.new(bytes.fromhex(salt), code.encode(), hashlib.sha256).hexdigest()


def _code_key(rt: AuthRuntime, purpose: Purpose, subject: str) -> str:
    return rt.key("phone-code", purpose, hashlib.sha256(subject.encode()).hexdigest()[:40])


async def reserve_send(rt: AuthRuntime, *, phone: str, ip: str | None, account: str | None) -> None:
    """Count one send against every limit (429 with Retry-After when over one); called whether or not an
    SMS will really leave, so that the answers are the same for numbers with and without an account."""
    s = rt.settings
    now = rt.clock()
    wait_key = rt.key("sms-next", phone)
    until = await rt.redis.get(wait_key)
    if until is not None and float(until) > now:
        raise RateLimited("a code was sent to this number a moment ago; wait before asking again",
                          retry_after=retry_after(float(until) - now), code="sms-backoff")
    await rt.limit(f"sms:ip:{ip or '-'}", limit=s.sms_ip_limit, window=s.sms_window,
                   detail="too many codes requested from this address; try again later")
    await rt.limit(f"sms:number:{phone}", limit=s.sms_number_limit, window=s.sms_window,
                   detail="too many codes sent to this number; try again later")
    if account is not None:
        await rt.limit(f"sms:account:{account}", limit=s.sms_account_limit, window=s.sms_window,
                       detail="too many codes sent for this account; try again later")
    level_key = rt.key("sms-level", phone)
    level = int(await rt.redis.incr(level_key))
    await rt.redis.expire(level_key, int(s.sms_window))
    pause = min(s.sms_backoff_base * 2 ** (level - 1), s.sms_backoff_max)
    if pause > 0:
        await rt.redis.set(wait_key, repr(now + pause), ex=retry_after(pause) + 1)


async def queue_code(session: AsyncSession, rt: AuthRuntime, *, purpose: Purpose, subject: str, phone: str,
                     user_id: uuid.UUID | None, username: str | None, ip: str | None = None,
                     user_agent: str | None = None) -> None:
    """Inside the caller's transaction: a new code for (purpose, subject), replacing an unused one, and the
    `sms_requested` event. (Valkey is written first: if the transaction fails, the code is never sent.)"""
    s = rt.settings
    code = f"{secrets.randbelow(10**6):06d}"
    salt = secrets.token_hex(16)
    pending = PendingCode(mac=_mac(salt, code), salt=salt, phone=phone, user_id=str(user_id) if user_id else None,
                          expires=rt.clock() + s.phone_code_ttl, ip=ip, user_agent=user_agent)
    key = _code_key(rt, purpose, subject)
    await rt.redis.set(key, json.dumps(asdict(pending)), ex=s.phone_code_ttl)
    await rt.redis.delete(key + ":attempts")
    expires = rt.now() + timedelta(seconds=s.phone_code_ttl)
    await add_event(session, SmsRequested(user_id=user_id, phone=phone, kind=KIND_OF[purpose], code=code,
                                          expires_at=expires, username=username),
                    subject=str(user_id) if user_id else phone)
    if s.env == "dev":  # like the dev email link: a developer can sign in without an SMS gateway
        log.info("SMS %s code for %s: %s", KIND_OF[purpose], mask(phone), code)


async def take_code(rt: AuthRuntime, *, purpose: Purpose, subject: str, code: str) -> PendingCode | None:
    """The pending code's record when `code` is right (and it is consumed: single use), else None.

    A wrong code counts; the `phone_code_attempts`-th wrong one deletes the code."""
    key = _code_key(rt, purpose, subject)
    raw = await rt.redis.get(key)
    if raw is None:
        return None
    pending = PendingCode(**json.loads(raw))
    if rt.clock() >= pending.expires:
        await rt.redis.delete(key, key + ":attempts")
        return None
    given = code.strip().replace(" ", "")
    if not (given.isdigit() and len(given) == 6 and hmac.compare_digest(_mac(pending.salt, given), pending.mac)):
        attempts = int(await rt.redis.incr(key + ":attempts"))
        await rt.redis.expire(key + ":attempts", rt.settings.phone_code_ttl)
        if attempts >= rt.settings.phone_code_attempts:
            await rt.redis.delete(key, key + ":attempts")
        return None
    if not await rt.redis.delete(key):  # a concurrent request used it first
        return None
    return pending


async def drop_code(rt: AuthRuntime, *, purpose: Purpose, subject: str) -> None:
    key = _code_key(rt, purpose, subject)
    await rt.redis.delete(key, key + ":attempts")
