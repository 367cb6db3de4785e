"""The migration builds exactly the schema the models describe; the API documents build; the process serves."""

from __future__ import annotations

from typing import Any

import httpx
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from quark_ai.app import module
from quark_ai.models import Base
from quark_sdk.apidocs import asyncapi_document
from quark_sdk.app import create_service_app
from quark_sdk.outbox import EVENT_METADATA
from quark_sdk.testing import QuarkTestEnv


async def test_migrations_match_the_models(quark: QuarkTestEnv) -> None:
    svc = await quark.start(module)

    def diff(connection: Any) -> list[Any]:
        ctx = MigrationContext.configure(connection, opts={"compare_type": True})
        return list(compare_metadata(ctx, [Base.metadata, EVENT_METADATA]))

    async with svc.ctx.database().engine.connect() as conn:
        changes = await conn.run_sync(diff)
    assert changes == []


def test_openapi_and_asyncapi_build() -> None:
    app = create_service_app(module, module.settings_cls.load(env="dev"), migrate_on_start=False)
    paths = app.openapi()["paths"]
    assert {
        "/api/v1/ai/drafts",
        "/api/v1/ai/drafts/{draft_id}/approve",
        "/api/v1/ai/recommendations",
        "/api/v1/ai/moderation/{result_id}/review",
        "/api/v1/ai/runs",
    } <= set(paths)
    channels = asyncapi_document([module])["channels"]
    assert "quark_ai_moderation_flagged" in channels and "quark_ai_suggestion_generated" in channels


async def test_serves_as_its_own_process(quark: QuarkTestEnv) -> None:
    proc = await quark.spawn(module, "quark_ai.app:module")
    async with httpx.AsyncClient(base_url=proc.url) as client:
        ready = await client.get("/health/ready")
        assert ready.status_code == 200, ready.text
        assert ready.json()["checks"] == {"database": "ok", "redis": "ok", "nats": "ok"}
        missing = await client.get("/api/v1/ai/drafts/nothing")
        assert missing.status_code == 401 and missing.headers["content-type"] == "application/problem+json"
