"""What a running user instance holds beside the SDK context: its settings and the follow rate limiter.

Built once per running instance by the SDK (`QuarkModule(runtime=build_runtime)`) and handed to
routes (`Runtime`) and event handlers (their first argument).
"""

from __future__ import annotations

from dataclasses import dataclass

from quark_sdk.app import ServiceContext
from quark_sdk.ratelimit import RateLimiter
from quark_user.settings import UserSettings


@dataclass
class UserRuntime:
    ctx: ServiceContext[UserSettings, UserRuntime]
    limiter: RateLimiter

    @property
    def settings(self) -> UserSettings:
        return self.ctx.settings


async def build_runtime(ctx: ServiceContext[UserSettings, UserRuntime]) -> UserRuntime:
    return UserRuntime(ctx=ctx, limiter=RateLimiter(ctx.cache(), prefix=ctx.key()))
