"""The migration builds exactly the schema the models describe, and the API documents build."""

from pathlib import Path
from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from media_testkit import start

from quark_media.app import module
from quark_media.models import Base
from quark_sdk.apidocs import asyncapi_document
from quark_sdk.app import create_service_app
from quark_sdk.outbox import EVENT_METADATA
from quark_sdk.testing import QuarkTestEnv


async def test_migrations_match_the_models(quark: QuarkTestEnv, tmp_path: Path) -> None:
    h = await start(quark, tmp_path)

    def diff(connection: Any) -> list[Any]:
        ctx = MigrationContext.configure(connection, opts={"compare_type": True})
        return list(compare_metadata(ctx, [Base.metadata, EVENT_METADATA]))

    async with h.svc.ctx.database().engine.connect() as conn:
        changes = await conn.run_sync(diff)
    assert changes == []


def test_openapi_and_asyncapi_build() -> None:
    app = create_service_app(module, module.settings_cls.load(env="dev"), migrate_on_start=False)
    paths = app.openapi()["paths"]
    assert "/api/v1/media" in paths and "/api/v1/media/{media_id}/variants/{name}" in paths
    doc = asyncapi_document([module])
    channels = doc["channels"]
    for name in ("uploaded", "processed", "failed", "deleted"):
        assert f"quark_media_{name}" in channels


def test_manifest_lists_what_the_code_does() -> None:
    manifest = module.manifest()
    assert manifest.port == 3003 and manifest.requires.storage
    consumed = {t for c in module.consumers for t in c.handlers}
    assert consumed == set(manifest.consumes)
