"""`Database.read()`: reads outside any transaction (no BEGIN/ROLLBACK round trips), and no writes."""

from __future__ import annotations

import pytest
from sqlalchemy import Integer, String, insert, select, text
from sqlalchemy.orm import Mapped, mapped_column

from quark_sdk.db import Database, QuarkBase, ReadOnlySessionError, service_metadata
from quark_sdk.testing import QuarkTestEnv
from sample.module import module as sample_module


class Base(QuarkBase):
    __abstract__ = True
    metadata = service_metadata()


class Note(Base):
    __tablename__ = "read_session_notes"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    body: Mapped[str] = mapped_column(String(50))


@pytest.fixture
async def db(quark: QuarkTestEnv) -> Database:
    settings = await quark.settings(sample_module)
    assert settings.database_url is not None
    database = Database(settings.database_url, service="sample", pool_size=1)  # one connection: reuse is certain
    async with database.engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
    yield database
    await database.dispose()


async def test_each_read_statement_runs_outside_a_transaction(db: Database) -> None:
    async with db.read() as session:
        first = await session.scalar(text("SELECT pg_current_xact_id_if_assigned() IS NULL"))
        second = await session.scalar(text("SELECT transaction_timestamp()"))
        third = await session.scalar(text("SELECT transaction_timestamp()"))
    assert first is True and second != third  # each statement is its own transaction
    async with db.session() as session:  # the ordinary session: one transaction around its statements
        a = await session.scalar(text("SELECT transaction_timestamp()"))
        b = await session.scalar(text("SELECT transaction_timestamp()"))
    assert a == b


async def test_reads_see_committed_rows_and_the_connection_goes_back_transactional(db: Database) -> None:
    async with db.transaction() as session:
        session.add(Note(id=1, body="committed"))
    async with db.read() as session:
        assert (await session.scalars(select(Note.body))).all() == ["committed"]
        # A column named like a verb is still a read.
        assert await session.scalar(text("SELECT 'x' AS updated_at")) == "x"
    # The pool's one connection, after a read session: a failed transaction still rolls back.
    with pytest.raises(RuntimeError):
        async with db.transaction() as session:
            session.add(Note(id=2, body="rolled back"))
            await session.flush()
            raise RuntimeError("abort")
    async with db.read() as session:
        assert (await session.scalars(select(Note.id))).all() == [1]


async def test_a_read_session_refuses_every_kind_of_write(db: Database) -> None:
    attempts = [
        lambda s: s.execute(insert(Note).values(id=3, body="core insert")),
        lambda s: s.execute(text("UPDATE read_session_notes SET body = 'x'")),
        lambda s: s.execute(text("delete from read_session_notes")),
    ]
    for attempt in attempts:
        async with db.read() as session:
            with pytest.raises(ReadOnlySessionError):
                await attempt(session)
    async with db.read() as session:
        session.add(Note(id=4, body="orm add"))
        with pytest.raises(ReadOnlySessionError):
            await session.flush()
    async with db.read() as session:
        assert (await session.scalars(select(Note.id))).all() == []
