"""What a running auth instance holds besides the SDK context: keys, hasher, limiter, clock.

Built by the SDK from `build_runtime` when the module starts. The clock is injectable so
tests can move time (lockout windows, key rotation) without sleeping.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import redis.asyncio as aioredis

from quark_auth.keys import KeyManager
from quark_auth.passwords import PasswordHasher
from quark_auth.settings import AuthSettings
from quark_sdk.auth import TokenVerifier
from quark_sdk.errors import RateLimited
from quark_sdk.ratelimit import RateLimiter


@dataclass
class AuthRuntime:
    settings: AuthSettings
    keys: KeyManager
    hasher: PasswordHasher
    redis: aioredis.Redis
    limiter: RateLimiter
    verifier: TokenVerifier
    key_prefix: str  # this module's Redis key space (namespaced per test)
    clock: Callable[[], float] = field(default=time.time)
    # Sign-in providers' discovery documents and JWKS, by URL: (fetched at, document).
    provider_cache: dict[str, tuple[float, dict[str, Any]]] = field(default_factory=dict)

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.clock(), UTC)

    async def aclose(self) -> None:
        await self.keys.aclose()

    def set_clock(self, clock: Callable[[], float]) -> None:
        """Use `clock` for tokens, limits, lockouts and key rotation (tests)."""
        self.clock = clock
        self.keys.clock = clock

    def key(self, *parts: str) -> str:
        return ":".join([self.key_prefix, *parts])

    async def limit(self, key: str, *, limit: int, window: float, detail: str) -> None:
        """Count one hit; over the limit raise RateLimited (429 + Retry-After)."""
        result = await self.limiter.hit(key, limit=limit, window=window, now=self.clock())
        if not result.allowed:
            raise RateLimited(detail, retry_after=result.retry_after)

    async def allowed(self, key: str, *, limit: int, window: float) -> bool:
        """Count one hit; False when over the limit (for limits that must stay silent)."""
        result = await self.limiter.hit(key, limit=limit, window=window, now=self.clock())
        return result.allowed


def retry_after(seconds: float) -> int:
    return max(1, math.ceil(seconds))
