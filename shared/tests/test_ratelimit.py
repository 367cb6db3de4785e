"""Sliding-window rate limits against a real Valkey server."""

from __future__ import annotations

import uuid

import pytest
import redis.asyncio as aioredis

from quark_sdk.errors import RateLimited
from quark_sdk.ratelimit import RateLimiter
from quark_sdk.testing import QuarkServers


@pytest.fixture
async def limiter(quark_servers: QuarkServers) -> RateLimiter:
    client = aioredis.from_url(quark_servers.redis_url)
    yield RateLimiter(client, prefix="test:" + uuid.uuid4().hex)
    await client.aclose()


async def test_allows_up_to_limit_then_refuses_with_retry_after(limiter: RateLimiter) -> None:
    t = 1_000_000.0
    results = [await limiter.hit("k", limit=3, window=10, now=t + i * 0.1) for i in range(4)]
    assert [r.allowed for r in results] == [True, True, True, False]
    assert 1 <= results[-1].retry_after <= 10


async def test_window_slides(limiter: RateLimiter) -> None:
    t = 2_000_000.0  # aligned to the 10 s window
    for i in range(3):
        assert (await limiter.hit("k", limit=3, window=10, now=t + i)).allowed
    # Half-way into the next window, half of the previous window's hits still count.
    assert (await limiter.hit("k", limit=3, window=10, now=t + 15)).allowed  # 1.5 + 1 <= 3
    assert not (await limiter.hit("k", limit=3, window=10, now=t + 15.1)).allowed  # ~1.5 + 2 > 3
    assert (await limiter.hit("k", limit=3, window=10, now=t + 29)).allowed  # previous window nearly expired


async def test_keys_are_independent_and_reset(limiter: RateLimiter) -> None:
    t = 3_000_000.0
    assert (await limiter.hit("a", limit=1, window=60, now=t)).allowed
    assert not (await limiter.hit("a", limit=1, window=60, now=t)).allowed
    assert (await limiter.hit("b", limit=1, window=60, now=t)).allowed
    await limiter.reset("a")
    assert (await limiter.hit("a", limit=1, window=60, now=t)).allowed


async def test_check_raises_rate_limited(limiter: RateLimiter) -> None:
    await limiter.check("c", limit=1, window=60)
    with pytest.raises(RateLimited) as info:
        await limiter.check("c", limit=1, window=60)
    assert info.value.status == 429
    assert int(info.value.headers["Retry-After"]) >= 1


async def test_refund_gives_back_an_allowed_hit_only(limiter: RateLimiter) -> None:
    t = 4_000_000.0
    first = await limiter.hit("r", limit=2, window=60, now=t)
    second = await limiter.hit("r", limit=2, window=60, now=t)
    refused = await limiter.hit("r", limit=2, window=60, now=t)
    assert (first.allowed, second.allowed, refused.allowed) == (True, True, False)
    await limiter.refund(refused)  # counted nothing: gives nothing back
    assert not (await limiter.hit("r", limit=2, window=60, now=t)).allowed
    await limiter.refund(second)
    assert (await limiter.hit("r", limit=2, window=60, now=t)).allowed
    # Refunds never take the count below zero (a refund after the keys were reset).
    await limiter.reset("r")
    await limiter.refund(first)
    await limiter.refund(first)
    assert [(await limiter.hit("r", limit=2, window=60, now=t)).allowed for _ in range(3)] == [True, True, False]
