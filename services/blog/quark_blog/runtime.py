"""What a running blog instance holds beside the SDK context: timelines, rate limiter, clock, scheduler wake-up.

Built once per running instance by the SDK (`QuarkModule(runtime=build_runtime)`) and handed to
routes (`Runtime`) and event handlers (their first argument), so several instances in one process
(tests, the embedded station) never mix up their Redis key spaces.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import asyncpg
from sqlalchemy.engine import make_url

from quark_blog.settings import BlogSettings
from quark_blog.timeline import Timelines
from quark_sdk.app import ServiceContext
from quark_sdk.ratelimit import RateLimiter

Clock = Callable[[], datetime]


def system_clock() -> datetime:
    return datetime.now(UTC)


@dataclass
class BlogRuntime:
    ctx: ServiceContext[BlogSettings, BlogRuntime]
    timelines: Timelines
    limiter: RateLimiter
    clock: Clock = system_clock
    wake_scheduler: asyncio.Event = field(default_factory=asyncio.Event)

    _read_pool: asyncpg.Pool | None = None
    _read_pool_lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def settings(self) -> BlogSettings:
        return self.ctx.settings

    def now(self) -> datetime:
        return self.clock()

    async def read_pool(self) -> asyncpg.Pool:
        """A plain asyncpg pool of fixed size for the hot reads (home timeline hydration).

        SQLAlchemy's pool grows past its size under bursts and closes the extra connections
        when they come back: each new one costs a TLS probe, type introspection and a cold
        statement cache. This pool keeps its connections (and their prepared statements).
        """
        if self._read_pool is None:
            async with self._read_pool_lock:
                if self._read_pool is None:
                    url = make_url(self.ctx.database().url).set(drivername="postgresql")
                    size = self.settings.read_pool_size
                    self._read_pool = await asyncpg.create_pool(
                        url.render_as_string(hide_password=False),
                        min_size=1,
                        max_size=size,
                        max_inactive_connection_lifetime=300,
                        connection_class=_ReadConnection,
                    )
        return self._read_pool

    async def aclose(self) -> None:
        pool, self._read_pool = self._read_pool, None
        if pool is not None:
            await pool.close()


class _ReadConnection(asyncpg.Connection):
    """Read-only single statements set no session state, so returning one to the pool needs no
    `RESET ALL; UNLISTEN *; ...` round trip (an open transaction is still rolled back)."""

    def get_reset_query(self) -> str:
        return ""


async def build_runtime(ctx: ServiceContext[BlogSettings, BlogRuntime]) -> BlogRuntime:
    settings = ctx.settings
    return BlogRuntime(
        ctx=ctx,
        timelines=Timelines(ctx, cap=settings.timeline_cap, ttl_ms=settings.timeline_ttl * 1000),
        limiter=RateLimiter(ctx.cache(), prefix=ctx.key()),
    )
