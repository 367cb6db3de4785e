"""The migration builds exactly the schema the models describe, and the API documents build."""

from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from quark_sdk.apidocs import asyncapi_document
from quark_sdk.app import create_service_app
from quark_sdk.outbox import EVENT_METADATA
from quark_sdk.testing import QuarkTestEnv
from quark_user.app import module
from quark_user.models import Base


async def test_migrations_match_the_models(quark: QuarkTestEnv) -> None:
    svc = await quark.start(module)

    def diff(connection: Any) -> list[Any]:
        ctx = MigrationContext.configure(connection, opts={"compare_type": True})
        return list(compare_metadata(ctx, [Base.metadata, EVENT_METADATA]))

    async with svc.ctx.database().engine.connect() as conn:
        changes = await conn.run_sync(diff)
    # Expression indexes cannot be compared by autogenerate (it skips them with a warning); the
    # search test proves they exist by finding them in the query plan.
    assert changes == []


def test_openapi_and_asyncapi_build() -> None:
    app = create_service_app(module, module.settings_cls.load(env="dev"), migrate_on_start=False)
    paths = app.openapi()["paths"]
    assert "/api/v1/users/{username}/follow" in paths and "/api/v1/users/me" in paths
    doc = asyncapi_document([module])
    channels = doc["channels"]
    assert "quark_user_followed" in channels and "quark_user_deleted" in channels
