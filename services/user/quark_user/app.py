import asyncio
import logging
from datetime import timedelta
from pathlib import Path

from fastapi import FastAPI

from quark_sdk.app import QuarkModule, ServiceContext, create_service_app
from quark_sdk.ratelimit import RateLimiter
from quark_user import service
from quark_user.api import router
from quark_user.events import accounts, avatars
from quark_user.models import Base
from quark_user.settings import UserSettings

log = logging.getLogger("quark.user")


async def start_limiter(ctx: ServiceContext) -> None:
    ctx.extras["limiter"] = RateLimiter(ctx.cache(), prefix=ctx.key())


async def bound_nats_drain(ctx: ServiceContext) -> None:
    """Shutdown hook, a local workaround for an SDK issue: `EventBus.close()` drains the NATS connection, and
    the pull subscriptions the consumers leave behind can make `drain()` wait its full default timeout (30 s:
    nats-py's fetch takes messages off the subscription queue without `task_done()`, so the drain's
    `queue.join()` never returns). Nothing is lost by draining for at most 2 s: consumers ack explicitly and
    the relay has awaited every publish acknowledgement before it stops."""
    if ctx.bus is not None and ctx.bus.is_connected:
        ctx.bus.nc.options["drain_timeout"] = 2


async def purge_old_activity(ctx: ServiceContext) -> None:
    """Background job: drop activity entries older than `activity_retention_days` (0 keeps everything)."""
    settings = ctx.settings
    assert isinstance(settings, UserSettings)
    if settings.activity_retention_days == 0:
        return
    while True:
        async with ctx.database().session() as session:
            purged = await service.purge_activity(session, older_than=timedelta(days=settings.activity_retention_days))
        if purged:
            log.info("purged %d activity entries older than %d days", purged, settings.activity_retention_days)
        await asyncio.sleep(settings.activity_purge_interval)


module = QuarkModule(
    name="user",
    settings_cls=UserSettings,
    root=Path(__file__).resolve().parent.parent,
    routers=[router],
    metadata=Base.metadata,
    consumers=[accounts, avatars],
    on_startup=[start_limiter],
    on_shutdown=[bound_nats_drain],
    background=[purge_old_activity],
    title="Quark user service",
)


def create_app() -> FastAPI:
    return create_service_app(module)
