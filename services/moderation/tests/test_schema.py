"""The migration builds exactly the schema the models describe."""

from pathlib import Path
from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from quark_moderation.app import module
from quark_moderation.models import Base
from quark_sdk.outbox import EVENT_METADATA
from quark_sdk.testing import QuarkTestEnv


async def test_migrations_match_the_models(quark: QuarkTestEnv, tmp_path: Path) -> None:
    svc = await quark.start(module)

    def diff(connection: Any) -> list[Any]:
        ctx = MigrationContext.configure(connection, opts={"compare_type": True})
        return list(compare_metadata(ctx, [Base.metadata, EVENT_METADATA]))

    async with svc.ctx.database().engine.connect() as conn:
        changes = await conn.run_sync(diff)
    assert changes == []


async def test_consumer_outcome_series_exist_from_the_start(quark: QuarkTestEnv, tmp_path: Path) -> None:
    """The SDK creates every outcome series of a consumer at 0 when it starts: a first dead letter is then an
    increase Prometheus can see (docs/operations.md, "Observability")."""
    from prometheus_client import REGISTRY, generate_latest

    await quark.start(module)
    text = generate_latest(REGISTRY).decode()
    for consumer in ("moderation-intake", "moderation-audit"):
        assert f'quark_events_consumed_total{{consumer="{consumer}",outcome="applied",service="moderation"}}' in text
