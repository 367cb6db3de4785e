"""What a running AI instance holds beside the SDK context: provider, HTTP clients, limiter, models.

Event handlers get only (session, event); they find their instance through the session's
database (`session.info["quark_db"]`), so several instances in one process never mix up.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import cast

import httpx
from sqlalchemy.ext.asyncio import AsyncSession

from quark_ai.classifier import Moderator
from quark_ai.providers import Provider, build_provider
from quark_ai.recommend import Recommender
from quark_ai.settings import AISettings
from quark_sdk.app import ServiceContext
from quark_sdk.db import Database
from quark_sdk.ratelimit import RateLimiter

Clock = Callable[[], datetime]


def system_clock() -> datetime:
    return datetime.now(UTC)


@dataclass
class AIRuntime:
    ctx: ServiceContext
    provider: Provider
    provider_http: httpx.AsyncClient
    blog_http: httpx.AsyncClient  # replaceable in tests (e.g. by a blog module's in-process client)
    limiter: RateLimiter
    moderator: Moderator
    recommender: Recommender
    clock: Clock = system_clock

    @property
    def settings(self) -> AISettings:
        return cast(AISettings, self.ctx.settings)

    def now(self) -> datetime:
        return self.clock()


_BY_DB: weakref.WeakKeyDictionary[Database, AIRuntime] = weakref.WeakKeyDictionary()


def install(ctx: ServiceContext) -> AIRuntime:
    s = cast(AISettings, ctx.settings)
    provider_http = httpx.AsyncClient(timeout=httpx.Timeout(s.provider_timeout, connect=min(5.0, s.provider_timeout)))
    rt = AIRuntime(
        ctx=ctx,
        provider=build_provider(s, provider_http),
        provider_http=provider_http,
        blog_http=httpx.AsyncClient(base_url=s.blog_base_url(), timeout=s.blog_timeout),
        limiter=RateLimiter(ctx.cache(), prefix=ctx.key()),
        moderator=Moderator(s.moderation_threshold, s.moderation_rules, s.moderation_max_chars),
        recommender=Recommender(),
    )
    ctx.extras["ai"] = rt
    _BY_DB[ctx.database()] = rt
    return rt


async def close(ctx: ServiceContext) -> None:
    rt = ctx.extras.pop("ai", None)
    if isinstance(rt, AIRuntime):
        await asyncio.gather(rt.provider_http.aclose(), rt.blog_http.aclose(), return_exceptions=True)


def runtime_of(ctx: ServiceContext) -> AIRuntime:
    rt = ctx.extras.get("ai")
    if rt is None:
        rt = install(ctx)
    return cast(AIRuntime, rt)


def runtime_for_session(session: AsyncSession) -> AIRuntime:
    db = session.info.get("quark_db")
    rt = _BY_DB.get(db) if db is not None else None
    if rt is None:
        raise RuntimeError("ai runtime not installed for this database (startup not finished)")
    return rt
