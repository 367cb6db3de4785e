"""The migrations build exactly the schema the models describe."""

from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from quark_messaging.app import module
from quark_messaging.models import Base
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
