import asyncio
import logging
from pathlib import Path

from fastapi import FastAPI

from quark_media import ingest, service
from quark_media.api import router
from quark_media.events import accounts, usage
from quark_media.models import Base
from quark_media.runtime import MediaRuntime, build_runtime
from quark_media.settings import MediaSettings
from quark_sdk.app import QuarkModule, ServiceContext, create_service_app
from quark_sdk.tasks import wait_event

log = logging.getLogger("quark.media")

MediaContext = ServiceContext[MediaSettings, MediaRuntime]


async def storage_ready(ctx: MediaContext) -> None:
    """Readiness: the object store answers (a HEAD on the bucket in S3, the directory tree locally)."""
    await ctx.runtime.storage.ensure_bucket()


async def recover_processing(ctx: MediaContext) -> None:
    """Background job: re-run processing lost to a crash or restart (see ingest.recover)."""
    rt = ctx.runtime
    settings = rt.settings
    while True:
        await rt.ensure_storage()
        resumed = await ingest.recover(rt)
        if resumed:
            log.info("resumed processing of %d media", resumed)
        rt.wake_recovery.clear()
        await wait_event(rt.wake_recovery, settings.recovery_interval)


async def sweep_orphans(ctx: MediaContext) -> None:
    """Background job: delete media never attached within `orphan_ttl` (0 disables)."""
    rt = ctx.runtime
    settings: MediaSettings = rt.settings
    if settings.orphan_ttl == 0:
        return
    while True:
        removed = await service.sweep_orphans(rt)
        if removed:
            log.info("removed %d orphan media", removed)
        await asyncio.sleep(settings.orphan_sweep_interval)


module = QuarkModule(
    name="media",
    settings_cls=MediaSettings,
    root=Path(__file__).resolve().parent.parent,
    runtime=build_runtime,
    routers=[router],
    metadata=Base.metadata,
    consumers=[accounts, usage],
    readiness_checks=[("storage", storage_ready)],
    background=[recover_processing, sweep_orphans],
    title="Quark media service",
)


def create_app() -> FastAPI:
    return create_service_app(module)
