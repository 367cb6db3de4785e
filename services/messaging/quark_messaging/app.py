"""The messaging module: conversations, messages over REST and WebSocket, notifications."""

from __future__ import annotations

import contextlib
from pathlib import Path

from fastapi import FastAPI

from quark_messaging.api import chats, messages, notes
from quark_messaging.events import notify, push, replica
from quark_messaging.models import Base
from quark_messaging.runtime import MessagingRuntime, build_runtime
from quark_messaging.settings import MessagingSettings
from quark_messaging.ws import heartbeat
from quark_messaging.ws import router as ws_router
from quark_sdk.app import QuarkModule, ServiceContext, create_service_app


async def start_hub(ctx: ServiceContext[MessagingSettings, MessagingRuntime]) -> None:
    await ctx.runtime.hub.start()


async def stop_hub(ctx: ServiceContext[MessagingSettings, MessagingRuntime]) -> None:
    """Close the WebSockets (1012), leave the delivery subject and flush the live frames already sent."""
    rt = ctx.runtime
    await rt.hub.stop()
    await rt.sender.stop()  # sends still waiting get a 503; the runtime's aclose() does it again, harmlessly
    if ctx.bus is not None and ctx.bus.is_connected:
        with contextlib.suppress(Exception):
            await ctx.bus.nc.flush(timeout=1)


module = QuarkModule(
    name="messaging",
    settings_cls=MessagingSettings,
    root=Path(__file__).resolve().parent.parent,
    runtime=build_runtime,
    routers=[ws_router, chats, messages, notes],
    metadata=Base.metadata,
    consumers=[replica, notify, push],
    on_startup=[start_hub],
    on_shutdown=[stop_hub],
    background=[heartbeat],
    title="Quark messaging",
)


def create_app() -> FastAPI:
    return create_service_app(module)
