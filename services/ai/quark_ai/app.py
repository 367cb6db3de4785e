"""The AI module: moderation, tagging and recommendations driven by events; drafts a person approves."""

from __future__ import annotations

import asyncio
from pathlib import Path

from fastapi import FastAPI

from quark_ai import classifier
from quark_ai.api import router
from quark_ai.events import agents_consumer, signals_consumer
from quark_ai.models import Base
from quark_ai.runtime import AIRuntime, build_runtime
from quark_ai.settings import AISettings
from quark_sdk.app import QuarkModule, ServiceContext, create_service_app


async def warm_up_classifier(ctx: ServiceContext[AISettings, AIRuntime]) -> None:
    """Load the bundled classifier now, not inside the first event's transaction."""
    await asyncio.to_thread(classifier.warm_up)


module = QuarkModule(
    name="ai",
    settings_cls=AISettings,
    root=Path(__file__).resolve().parent.parent,
    runtime=build_runtime,
    routers=[router],
    metadata=Base.metadata,
    consumers=[agents_consumer, signals_consumer],
    on_startup=[warm_up_classifier],
    title="Quark AI",
)


def create_app() -> FastAPI:
    return create_service_app(module)
