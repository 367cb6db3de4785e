import asyncio
import logging
from datetime import timedelta
from pathlib import Path

from fastapi import FastAPI

from quark_sdk.app import QuarkModule, ServiceContext, create_service_app
from quark_user import activity
from quark_user.accounts import lift_expired_suspensions as lift_expired
from quark_user.api import router
from quark_user.events import accounts, avatars
from quark_user.models import Base
from quark_user.runtime import UserRuntime, build_runtime
from quark_user.settings import UserSettings

log = logging.getLogger("quark.user")


async def purge_old_activity(ctx: ServiceContext[UserSettings, UserRuntime]) -> None:
    """Background job: drop activity entries older than `activity_retention_days` (0 keeps everything)."""
    settings = ctx.settings
    if settings.activity_retention_days == 0:
        return
    while True:
        async with ctx.database().session() as session:
            purged = await activity.purge_activity(session, older_than=timedelta(days=settings.activity_retention_days))
        if purged:
            log.info("purged %d activity entries older than %d days", purged, settings.activity_retention_days)
        await asyncio.sleep(settings.activity_purge_interval)


async def lift_expired_suspensions(ctx: ServiceContext[UserSettings, UserRuntime]) -> None:
    """Background job: reinstate accounts whose timed suspension has ended. Safe on every instance at once;
    a crash (a database blip) is restarted by the SDK's supervisor."""
    while True:
        async with ctx.database().session() as session:
            lifted = await lift_expired(session)
        if lifted:
            log.info("lifted %d expired suspensions", lifted)
        await asyncio.sleep(ctx.settings.suspension_check_interval)


module = QuarkModule(
    name="user",
    settings_cls=UserSettings,
    root=Path(__file__).resolve().parent.parent,
    runtime=build_runtime,
    routers=[router],
    metadata=Base.metadata,
    consumers=[accounts, avatars],
    background=[purge_old_activity, lift_expired_suspensions],
    title="Quark user service",
)


def create_app() -> FastAPI:
    return create_service_app(module)
