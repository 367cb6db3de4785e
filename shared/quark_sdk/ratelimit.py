"""Rate limits kept in Redis, shared by every instance of a module.

A sliding-window counter (the current and previous fixed windows, weighted)
gives smooth limits with two keys per subject and one round trip. Over the
limit raises :class:`quark_sdk.errors.RateLimited`, which the error handlers
turn into 429 with `Retry-After`.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import redis.asyncio as aioredis

from quark_sdk.errors import RateLimited

# KEYS[1]=current window key, KEYS[2]=previous window key; ARGV: limit, window ms, elapsed ms, cost
_SLIDING_WINDOW = """
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
local previous = tonumber(redis.call('GET', KEYS[2]) or '0')
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local elapsed = tonumber(ARGV[3])
local cost = tonumber(ARGV[4])
local weighted = previous * (window - elapsed) / window + current
if weighted + cost > limit then
  return {0, math.floor(weighted)}
end
current = redis.call('INCRBY', KEYS[1], cost)
redis.call('PEXPIRE', KEYS[1], window * 2)
return {1, math.floor(previous * (window - elapsed) / window + current)}
"""

# KEYS[1]=the window key a hit counted in; ARGV: cost to give back (never below zero)
_REFUND = """
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
local back = math.min(current, tonumber(ARGV[1]))
if back > 0 then
  redis.call('DECRBY', KEYS[1], back)
end
return back
"""


@dataclass(frozen=True)
class RateLimitResult:
    allowed: bool
    used: int
    limit: int
    retry_after: int
    # Where an allowed hit counted, and how much: what `RateLimiter.refund` gives back.
    counted_in: str = ""
    cost: int = 0


class RateLimiter:
    """`await limiter.hit("login:ip:1.2.3.4", limit=10, window=60)`; keys live under `prefix`."""

    def __init__(self, redis: aioredis.Redis, *, prefix: str) -> None:
        self.redis = redis
        self.prefix = prefix.rstrip(":")
        self._script = redis.register_script(_SLIDING_WINDOW)
        self._refund = redis.register_script(_REFUND)

    async def hit(self, key: str, *, limit: int, window: float, cost: int = 1,
                  now: float | None = None) -> RateLimitResult:
        if limit <= 0 or window <= 0:
            raise ValueError("limit and window must be positive")
        now = time.time() if now is None else now
        window_ms = int(window * 1000)
        now_ms = int(now * 1000)
        slot = now_ms // window_ms
        elapsed = now_ms - slot * window_ms
        keys = [f"{self.prefix}:rl:{key}:{slot}", f"{self.prefix}:rl:{key}:{slot - 1}"]
        allowed, used = await self._script(keys=keys, args=[limit, window_ms, elapsed, cost])
        retry_after = 0 if allowed else max(1, math.ceil((window_ms - elapsed) / 1000))
        if not allowed:
            return RateLimitResult(False, int(used), limit, retry_after)
        return RateLimitResult(True, int(used), limit, retry_after, counted_in=keys[0], cost=cost)

    async def refund(self, result: RateLimitResult) -> None:
        """Give back an allowed hit that turned out not to be new work (an idempotent resend): it then
        does not count against the limit. A refused hit counted nothing; nothing is given back for it."""
        if result.allowed and result.counted_in and result.cost > 0:
            await self._refund(keys=[result.counted_in], args=[result.cost])

    async def check(self, key: str, *, limit: int, window: float, cost: int = 1,
                    detail: str | None = None) -> RateLimitResult:
        """Like `hit`, but raises RateLimited (429 + Retry-After) when over the limit."""
        result = await self.hit(key, limit=limit, window=window, cost=cost)
        if not result.allowed:
            raise RateLimited(detail or f"rate limit of {limit} per {window:g}s exceeded",
                              retry_after=result.retry_after)
        return result

    async def reset(self, key: str, *, window: float | None = None, now: float | None = None) -> None:
        """Forget `key`'s hits. With its `window`, deletes the two live keys directly (no SCAN of the keyspace)."""
        if window is None:
            keys = [k async for k in self.redis.scan_iter(match=f"{self.prefix}:rl:{key}:*", count=100)]
        else:
            slot = int((time.time() if now is None else now) * 1000) // int(window * 1000)
            keys = [f"{self.prefix}:rl:{key}:{slot}", f"{self.prefix}:rl:{key}:{slot - 1}"]
        if keys:
            await self.redis.delete(*keys)
