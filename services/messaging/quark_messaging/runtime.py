"""What a running messaging instance holds beside the SDK context: the realtime hub and the rate limiter.

Built once per running instance by the SDK (`QuarkModule(runtime=build_runtime)`) and handed to
routes (`Runtime`) and event handlers (their first argument), so several instances in one process
(tests, the embedded station) never mix up their connections or Redis key spaces.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from quark_messaging.realtime import Hub
from quark_messaging.settings import MessagingSettings
from quark_sdk.app import ServiceContext
from quark_sdk.db import Database
from quark_sdk.ratelimit import RateLimiter

if TYPE_CHECKING:
    from quark_messaging.service import SendBatcher


@dataclass
class MessagingRuntime:
    ctx: ServiceContext[MessagingSettings, MessagingRuntime]
    hub: Hub
    limiter: RateLimiter
    sender: SendBatcher | None = None  # the group-commit writer of sends, made on first use

    @property
    def settings(self) -> MessagingSettings:
        return self.ctx.settings

    def db(self) -> Database:
        return self.ctx.database()


async def build_runtime(ctx: ServiceContext[MessagingSettings, MessagingRuntime]) -> MessagingRuntime:
    return MessagingRuntime(ctx=ctx, hub=Hub(ctx, presence_ttl=ctx.settings.presence_ttl),
                            limiter=RateLimiter(ctx.cache(), prefix=ctx.key()))
