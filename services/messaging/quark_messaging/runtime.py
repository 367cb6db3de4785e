"""What a running messaging instance holds beside the SDK context: the realtime hub and the rate limiter.

Event handlers get only (session, event); they find their instance's runtime through the
session's database (`session.info["quark_db"]`), so several instances in one process (tests,
the embedded station) never mix up their connections or Redis key spaces.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import cast

from sqlalchemy.ext.asyncio import AsyncSession

from quark_messaging.realtime import Hub
from quark_messaging.settings import MessagingSettings
from quark_sdk.app import ServiceContext
from quark_sdk.db import Database
from quark_sdk.ratelimit import RateLimiter


@dataclass
class MessagingRuntime:
    ctx: ServiceContext
    hub: Hub
    limiter: RateLimiter

    @property
    def settings(self) -> MessagingSettings:
        return cast(MessagingSettings, self.ctx.settings)

    def db(self) -> Database:
        return self.ctx.database()


_BY_DB: weakref.WeakKeyDictionary[Database, MessagingRuntime] = weakref.WeakKeyDictionary()


def install(ctx: ServiceContext) -> MessagingRuntime:
    settings = cast(MessagingSettings, ctx.settings)
    rt = MessagingRuntime(
        ctx=ctx, hub=Hub(ctx, presence_ttl=settings.presence_ttl), limiter=RateLimiter(ctx.cache(), prefix=ctx.key())
    )
    ctx.extras["messaging"] = rt
    _BY_DB[ctx.database()] = rt
    return rt


def runtime_of(ctx: ServiceContext) -> MessagingRuntime:
    rt = ctx.extras.get("messaging")
    if rt is None:
        raise RuntimeError("messaging runtime not installed (startup not finished)")
    return cast(MessagingRuntime, rt)


def runtime_for_session(session: AsyncSession) -> MessagingRuntime:
    db = session.info.get("quark_db")
    rt = _BY_DB.get(db) if db is not None else None
    if rt is None:
        raise RuntimeError("messaging runtime not installed for this database (startup not finished)")
    return rt
