"""What a running blog instance holds beside the SDK context: timelines, rate limiter, clock, scheduler wake-up.

Event handlers get only (session, event); they find their instance's context through the
session's database (`session.info["quark_db"]`), so several instances in one process
(tests, the embedded station) never mix up their Redis key spaces.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import cast

from sqlalchemy.ext.asyncio import AsyncSession

from quark_blog.settings import BlogSettings
from quark_blog.timeline import Timelines
from quark_sdk.app import ServiceContext
from quark_sdk.db import Database
from quark_sdk.ratelimit import RateLimiter

Clock = Callable[[], datetime]


def system_clock() -> datetime:
    return datetime.now(UTC)


@dataclass
class BlogRuntime:
    ctx: ServiceContext
    timelines: Timelines
    limiter: RateLimiter
    clock: Clock = system_clock
    wake_scheduler: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def settings(self) -> BlogSettings:
        return cast(BlogSettings, self.ctx.settings)

    def now(self) -> datetime:
        return self.clock()


_BY_DB: weakref.WeakKeyDictionary[Database, BlogRuntime] = weakref.WeakKeyDictionary()


def install(ctx: ServiceContext) -> BlogRuntime:
    settings = cast(BlogSettings, ctx.settings)
    rt = BlogRuntime(
        ctx=ctx,
        timelines=Timelines(ctx, cap=settings.timeline_cap, ttl_ms=settings.timeline_ttl * 1000),
        limiter=RateLimiter(ctx.cache(), prefix=ctx.key()),
    )
    ctx.extras["blog"] = rt
    _BY_DB[ctx.database()] = rt
    return rt


def runtime_of(ctx: ServiceContext) -> BlogRuntime:
    rt = ctx.extras.get("blog")
    if rt is None:
        rt = install(ctx)
    return cast(BlogRuntime, rt)


def runtime_for_session(session: AsyncSession) -> BlogRuntime:
    db = session.info.get("quark_db")
    rt = _BY_DB.get(db) if db is not None else None
    if rt is None:
        raise RuntimeError("blog runtime not installed for this database (startup not finished)")
    return rt
