"""The AI module: moderation, tagging and recommendations driven by events; drafts a person approves."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from quark_ai.api import router
from quark_ai.events import agents_consumer, signals_consumer
from quark_ai.models import Base
from quark_ai.runtime import AIRuntime, build_runtime
from quark_ai.settings import AISettings
from quark_sdk.app import QuarkModule, ServiceContext, create_service_app


async def start_workers(ctx: ServiceContext[AISettings, AIRuntime]) -> None:
    """Start the worker processes (they load the classifier) now, not inside the first event's transaction.

    They stop with the runtime (`AIRuntime.aclose`)."""
    await ctx.runtime.cpu.start()


module = QuarkModule(
    name="ai",
    settings_cls=AISettings,
    root=Path(__file__).resolve().parent.parent,
    runtime=build_runtime,
    routers=[router],
    metadata=Base.metadata,
    consumers=[agents_consumer, signals_consumer],
    on_startup=[start_workers],
    title="Quark AI",
)


def create_app() -> FastAPI:
    return create_service_app(module)
