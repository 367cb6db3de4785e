"""The web module: pages for people (Jinja2 + HTMX) and the backend-for-frontend API under /api/v1/web.

It owns the gateway's catch-all route `/` (every path no other module claims) and keeps no
database: its state is the browser sessions in Valkey. Everything else comes from the other modules'
public APIs, called with the person's own token.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from quark_sdk.app import QuarkModule, create_service_app
from quark_web.bff import router as bff_router
from quark_web.pages import routers as page_routers
from quark_web.runtime import build_runtime
from quark_web.settings import WebSettings
from quark_web.socket import router as socket_router

module = QuarkModule(
    name="web",
    settings_cls=WebSettings,
    root=Path(__file__).resolve().parent.parent,
    runtime=build_runtime,
    routers=[bff_router, socket_router, *page_routers],
    title="Quark web client",
)


def create_app() -> FastAPI:
    return create_service_app(module)
