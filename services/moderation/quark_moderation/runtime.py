"""What a running moderation instance holds beside the SDK context: its rate limiter and clock.

Built once per running instance by the SDK (`QuarkModule(runtime=build_runtime)`) and handed to routes
(`Runtime`) and event handlers (their first argument)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from quark_moderation.settings import ModerationSettings
from quark_sdk.app import ServiceContext
from quark_sdk.ratelimit import RateLimiter

Clock = Callable[[], datetime]


def system_clock() -> datetime:
    return datetime.now(UTC)


@dataclass
class ModerationRuntime:
    ctx: ServiceContext[ModerationSettings, ModerationRuntime]
    limiter: RateLimiter
    clock: Clock = system_clock

    @property
    def settings(self) -> ModerationSettings:
        return self.ctx.settings

    def now(self) -> datetime:
        return self.clock()


async def build_runtime(ctx: ServiceContext[ModerationSettings, ModerationRuntime]) -> ModerationRuntime:
    return ModerationRuntime(ctx=ctx, limiter=RateLimiter(ctx.cache(), prefix=ctx.key()))
