"""The moderation module: one queue of reports and flags across the station, decisions, the audit log."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from quark_moderation.api import routers
from quark_moderation.events import auditing, intake
from quark_moderation.models import Base
from quark_moderation.runtime import ModerationRuntime, build_runtime
from quark_moderation.settings import ModerationSettings
from quark_sdk.app import QuarkModule, create_service_app

module: QuarkModule[ModerationSettings, ModerationRuntime] = QuarkModule(
    name="moderation",
    settings_cls=ModerationSettings,
    root=Path(__file__).resolve().parent.parent,
    runtime=build_runtime,
    routers=routers,
    metadata=Base.metadata,
    consumers=[intake, auditing],
    title="Quark moderation",
)


def create_app() -> FastAPI:
    return create_service_app(module)
