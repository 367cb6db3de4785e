"""What a running messaging instance holds beside the SDK context: the realtime hub, the rate limiter and
the group-commit writer of sends.

Built once per running instance by the SDK (`QuarkModule(runtime=build_runtime)`) and handed to
routes (`Runtime`) and event handlers (their first argument), so several instances in one process
(tests, the embedded station) never mix up their connections, writers or Redis key spaces.
"""

from __future__ import annotations

from dataclasses import dataclass

from quark_messaging.realtime import Hub
from quark_messaging.sending import SendBatcher
from quark_messaging.settings import MessagingSettings
from quark_sdk.app import ServiceContext
from quark_sdk.db import Database
from quark_sdk.ratelimit import RateLimiter


@dataclass
class MessagingRuntime:
    ctx: ServiceContext[MessagingSettings, MessagingRuntime]
    hub: Hub
    limiter: RateLimiter
    sender: SendBatcher  # the one writer of sends (group commit), running as long as the runtime

    @property
    def settings(self) -> MessagingSettings:
        return self.ctx.settings

    def db(self) -> Database:
        return self.ctx.database()

    async def aclose(self) -> None:
        """After the stop hook closed the sockets: sends still waiting are answered 503 (idempotent)."""
        await self.sender.stop()


async def build_runtime(ctx: ServiceContext[MessagingSettings, MessagingRuntime]) -> MessagingRuntime:
    sender = SendBatcher(ctx.database())
    sender.start()
    return MessagingRuntime(
        ctx=ctx,
        hub=Hub(ctx, presence_ttl=ctx.settings.presence_ttl),
        limiter=RateLimiter(ctx.cache(), prefix=ctx.key()),
        sender=sender,
    )
