"""The blog module: posts, comments, reactions, tags, moderation, search and timelines."""

from __future__ import annotations

import logging
from datetime import timedelta
from pathlib import Path

from fastapi import FastAPI

from quark_blog.api import routers
from quark_blog.events import fanout_consumer, replica_consumer
from quark_blog.models import Base
from quark_blog.runtime import BlogRuntime, build_runtime
from quark_blog.service import next_scheduled_at, publish_due_posts
from quark_blog.settings import BlogSettings
from quark_sdk.app import QuarkModule, ServiceContext, create_service_app
from quark_sdk.tasks import wait_event

log = logging.getLogger("quark.blog")


async def scheduler(ctx: ServiceContext[BlogSettings, BlogRuntime]) -> None:
    """Publish scheduled posts when due. Several instances may run it: rows are claimed with SKIP LOCKED.

    Sleeps until the next due post (at most `scheduler_interval`), or until a post is scheduled.
    """
    rt = ctx.runtime
    interval = rt.settings.scheduler_interval
    while True:
        rt.wake_scheduler.clear()
        published = await publish_due_posts(rt)
        if published:
            log.info("published %d scheduled post(s)", len(published))
            continue
        delay = interval
        nxt = await next_scheduled_at(rt)
        if nxt is not None:
            delay = max(0.0, min(interval, (nxt - rt.now()) / timedelta(seconds=1)))
        await wait_event(rt.wake_scheduler, delay)


module = QuarkModule(
    name="blog",
    settings_cls=BlogSettings,
    root=Path(__file__).resolve().parent.parent,
    runtime=build_runtime,
    routers=routers,
    metadata=Base.metadata,
    consumers=[replica_consumer, fanout_consumer],
    background=[scheduler],
    title="Quark blog",
)


def create_app() -> FastAPI:
    return create_service_app(module)
