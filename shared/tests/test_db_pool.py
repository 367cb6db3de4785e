"""The module's connection pool keeps its connections through bursts (issue #21: pool churn).

A new connection costs a PostgreSQL backend start, asyncpg's type introspection and a cold statement
cache; with `pool_size` 10 + `max_overflow` 10, every burst above 10 opened and closed up to 10 of them.
"""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy import event, text

from quark_sdk.db import Database
from quark_sdk.testing import QuarkTestEnv
from sample.module import module as sample_module


async def burst(db: Database, width: int) -> None:
    """`width` transactions holding a connection at the same time (each waits until all hold one)."""
    holding = 0
    everyone = asyncio.Event()

    async def one() -> None:
        nonlocal holding
        async with db.transaction() as session:
            await session.execute(text("SELECT 1"))
            holding += 1
            if holding == width:
                everyone.set()
            await everyone.wait()

    await asyncio.gather(*(one() for _ in range(width)))


def count_connects(db: Database) -> list[Any]:
    opened: list[Any] = []
    event.listen(db.engine.sync_engine, "connect", lambda dbapi_conn, record: opened.append(record))
    return opened


async def test_bursts_as_wide_as_the_pool_reuse_its_connections(quark: QuarkTestEnv) -> None:
    settings = await quark.settings(sample_module)
    assert settings.database_url is not None
    # The module's defaults, as start_context passes them.
    db = Database(settings.database_url, service="sample", pool_size=settings.db_pool_size,
                  max_overflow=settings.db_max_overflow)
    opened = count_connects(db)
    try:
        width = settings.db_pool_size + settings.db_max_overflow
        for _ in range(5):
            await burst(db, width)
        # The old defaults (10 + 10 overflow) opened 20 + 4 x 10 = 60 here; now the first burst opens them.
        assert len(opened) == settings.db_pool_size == 20
        assert db.engine.pool.checkedin() == 20  # type: ignore[attr-defined]
    finally:
        await db.dispose()


async def test_overflow_stays_available_and_is_closed_after_a_burst(quark: QuarkTestEnv) -> None:
    settings = await quark.settings(sample_module)
    assert settings.database_url is not None
    db = Database(settings.database_url, service="sample", pool_size=4, max_overflow=3)
    opened = count_connects(db)
    try:
        for _ in range(3):
            await burst(db, 7)
        assert len(opened) == 4 + 3 * 3  # the kept four, and three fresh overflow connections per burst
        assert db.engine.pool.checkedin() == 4  # type: ignore[attr-defined]
    finally:
        await db.dispose()


async def test_the_module_pool_follows_its_settings(quark: QuarkTestEnv) -> None:
    svc = await quark.start(sample_module, db_pool_size=3, db_max_overflow=2)
    db = svc.ctx.database()
    assert db.engine.pool.size() == 3  # type: ignore[attr-defined]
    await burst(db, 5)  # needs the two overflow connections (with none, this waits out pool_timeout and fails)


async def test_cancelled_transactions_and_sessions_return_their_connections(quark: QuarkTestEnv) -> None:
    """Closing is inline once a transaction has ended and shielded while one is open: either way a task
    cancelled inside, or right after, its transaction gives its connection back."""
    settings = await quark.settings(sample_module)
    assert settings.database_url is not None
    db = Database(settings.database_url, service="sample", pool_size=4)
    try:
        started = asyncio.Event()

        async def stuck_in_transaction() -> None:
            async with db.transaction() as session:
                await session.execute(text("SELECT 1"))
                started.set()
                await asyncio.Event().wait()  # parked until cancelled

        async def stuck_in_session() -> None:
            async with db.session() as session:
                await session.execute(text("SELECT 1"))  # autobegun: closing must roll back
                started.set()
                await asyncio.Event().wait()  # parked until cancelled

        for body in (stuck_in_transaction, stuck_in_session):
            started.clear()
            task = asyncio.create_task(body())
            await started.wait()
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            assert db.engine.pool.checkedout() == 0  # type: ignore[attr-defined]
        for _ in range(20):  # committed ones, closed inline, many times over
            async with db.transaction() as session:
                await session.execute(text("SELECT 1"))
        assert db.engine.pool.checkedout() == 0  # type: ignore[attr-defined]
        async with db.transaction() as session:
            assert await session.scalar(text("SELECT 2")) == 2  # and the pool still works
    finally:
        await db.dispose()
