"""Per-account lockout: failed passwords and second-factor codes count in one counter, which only a
complete login clears (a sign-in method added later counts its failures here too)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from quark_auth.common import digest, log
from quark_auth.models import User
from quark_auth.runtime import AuthRuntime, retry_after
from quark_sdk.errors import (
    RateLimited,
)


def account_key(user: User | None, login: str) -> str:
    # Unknown accounts lock exactly like real ones, so lockout does not reveal which accounts exist.
    return str(user.id) if user is not None else "unknown-" + digest(login.strip().lower())[:32]


async def check_lock(rt: AuthRuntime, account: str) -> None:
    until = await rt.redis.get(rt.key("lock", account))
    if until is not None:
        remaining = float(until) - rt.clock()
        if remaining > 0:
            raise RateLimited("too many failed attempts; account temporarily locked",
                              retry_after=retry_after(remaining), code="account-locked")


@asynccontextmanager
async def guess(rt: AuthRuntime, account: str) -> AsyncIterator[None]:
    """Check the lock, then hold one of the account's remaining guesses while a factor is being checked.

    Failures are counted after the (slow, bcrypt) check, so without this a burst of parallel guesses would
    all pass `check_lock` before the first failure is counted: the guesses in flight plus the failures in the
    window never exceed the lockout threshold (one at a time after a lockout ran out). A refused guess is
    told the account is locked, for a second."""
    await check_lock(rt, account)
    s = rt.settings
    key = rt.key("in-flight", account)
    async with rt.redis.pipeline(transaction=True) as pipe:
        pipe.incr(key)
        pipe.expire(key, 120)  # a crashed request does not hold its guess for longer
        in_flight = int((await pipe.execute())[0])
    try:
        failures = await rt.limiter.hit(f"fail:{account}", limit=s.lockout_threshold, window=s.lockout_window,
                                        cost=0, now=rt.clock())
        # Once a lockout has run out, the window may still hold the threshold's failures: one guess at a
        # time then (its failure locks again, for longer — the progressive lockout).
        if in_flight > max(1, s.lockout_threshold - failures.used):
            raise RateLimited("too many failed attempts; account temporarily locked", retry_after=1,
                              code="account-locked")
        yield
    finally:
        await rt.redis.decr(key)


async def record_failure(rt: AuthRuntime, account: str) -> None:
    """Count a failed password/code; the N-th failure in the window locks, each further lockout doubles."""
    s = rt.settings
    # A marker, so a successful login only pays for clearing counters when there is something to clear.
    await rt.redis.set(rt.key("failed", account), "1", ex=86400)
    result = await rt.limiter.hit(f"fail:{account}", limit=s.lockout_threshold, window=s.lockout_window,
                                  now=rt.clock())
    if result.allowed and result.used < s.lockout_threshold:
        return
    level_key = rt.key("lock-level", account)
    level = int(await rt.redis.incr(level_key))
    await rt.redis.expire(level_key, 86400)
    duration = min(s.lockout_base * 2 ** (level - 1), s.lockout_max)
    await rt.redis.set(rt.key("lock", account), repr(rt.clock() + duration), ex=retry_after(duration) + 60)
    log.warning("account %s locked for %.0fs after repeated failures (level %d)", account, duration, level)


async def clear_failures(rt: AuthRuntime, account: str) -> None:
    """After a success: forget failures (one DEL in the common case of none; the limiter reset SCANs)."""
    if await rt.redis.delete(rt.key("failed", account)):
        await rt.limiter.reset(f"fail:{account}")
        await rt.redis.delete(rt.key("lock-level", account), rt.key("lock", account))
