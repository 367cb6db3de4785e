"""Fixed-window counters in Redis, keyed by client address: registration and token endpoints.

Why fixed windows: one INCR per request, shared by every hub instance, and a precise Retry-After.
"""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Sequence

import redis.asyncio as aioredis

from quark_sdk.errors import RateLimited


def client_address(peer: str | None, forwarded_for: str | None, trusted_proxies: Sequence[str]) -> str:
    """The caller's address: the TCP peer, or, behind a trusted proxy, the last untrusted X-Forwarded-For hop."""
    addr = peer or "unknown"
    if not forwarded_for or not trusted_proxies or not _in_any(addr, trusted_proxies):
        return addr
    hops = [h.strip() for h in forwarded_for.split(",") if h.strip()]
    for hop in reversed(hops):
        if not _in_any(hop, trusted_proxies):
            return hop[:64]
    return hops[0][:64] if hops else addr


def _in_any(addr: str, networks: Sequence[str]) -> bool:
    try:
        ip = ipaddress.ip_address(addr)
    except ValueError:
        return False
    for net in networks:
        try:
            if ip in ipaddress.ip_network(net, strict=False):
                return True
        except ValueError:
            continue
    return False


class FixedWindow:
    """`limit` events per `window` seconds per subject; `hit` raises RateLimited past the limit."""

    def __init__(self, redis: aioredis.Redis, key_prefix: str, *, limit: int, window: float,
                 what: str = "requests") -> None:
        self.redis = redis
        self.prefix = key_prefix
        self.limit = limit
        self.window_ms = max(1, int(window * 1000))
        self.what = what

    def _key(self, subject: str) -> str:
        return f"{self.prefix}:{subject}"

    async def hit(self, subject: str) -> int:
        """Count one event; RateLimited once the window's count exceeds the limit."""
        pipe = self.redis.pipeline(transaction=True)
        pipe.incr(self._key(subject))
        pipe.pexpire(self._key(subject), self.window_ms, nx=True)
        pipe.pttl(self._key(subject))
        count, _, ttl = await pipe.execute()
        if int(count) > self.limit:
            raise RateLimited(f"too many {self.what}; retry later", retry_after=math.ceil(max(int(ttl), 1) / 1000))
        return int(count)

    async def check(self, subject: str) -> None:
        """RateLimited if the subject is already over the limit, without counting."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.get(self._key(subject))
        pipe.pttl(self._key(subject))
        count, ttl = await pipe.execute()
        if count is not None and int(count) >= self.limit:
            raise RateLimited(f"too many {self.what}; retry later", retry_after=math.ceil(max(int(ttl), 1) / 1000))
