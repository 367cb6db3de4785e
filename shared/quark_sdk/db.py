"""One async SQLAlchemy engine per service, and Alembic migrations per service.

Each service owns one PostgreSQL database and its own schema history
(`services/<name>/migrations`). Sessions carry the service name in
`session.info` so the outbox knows the event source without being told.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import MetaData, event, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, ORMExecuteState, Session, UOWTransaction
from sqlalchemy.sql.elements import TextClause

log = logging.getLogger("quark.db")

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def service_metadata() -> MetaData:
    """A MetaData with stable constraint names, so Alembic diffs stay clean."""
    return MetaData(naming_convention=NAMING_CONVENTION)


class QuarkBase(DeclarativeBase):
    """Convenience declarative base; services subclass it with their own metadata."""

    __abstract__ = True


class ReadOnlySessionError(RuntimeError):
    """A write was attempted through `Database.read()`: a programming error, found by the tests."""


class ReadOnlySession(Session):
    """The session class of `Database.read()`: its statements run outside any transaction, so it refuses
    writes (ORM changes at flush, INSERT/UPDATE/DELETE statements, and SQL text that names one)
    instead of committing each one by itself."""


_WRITE_SQL = re.compile(r"\b(insert|update|delete|merge|truncate)\b", re.IGNORECASE)


@event.listens_for(ReadOnlySession, "do_orm_execute")
def _refuse_write_statements(state: ORMExecuteState) -> None:
    statement = state.statement
    if state.is_insert or state.is_update or state.is_delete or (
        isinstance(statement, TextClause) and _WRITE_SQL.search(statement.text)
    ):
        raise ReadOnlySessionError("a read session cannot write; use Database.transaction()")


@event.listens_for(ReadOnlySession, "before_flush")
def _refuse_flushed_changes(session: Session, flush_context: UOWTransaction, instances: object) -> None:
    if session.new or session.dirty or session.deleted:
        raise ReadOnlySessionError("a read session cannot write; use Database.transaction()")


class Database:
    """The engine and session factory of one service's database."""

    def __init__(self, url: str, *, service: str, pool_size: int = 20, max_overflow: int = 0,
                 echo: bool = False) -> None:
        """`pool_size` connections are opened on demand and kept; `max_overflow` more are opened in a burst
        beyond them and closed again when returned.

        Overflow is off by default: each new connection costs PostgreSQL a backend start, asyncpg a type
        introspection query per custom type and a cold prepared-statement cache, and SQLAlchemy closes an
        overflow connection as soon as the pool is full again, so bursts paid that over and over (81
        introspections in 20 s in the blog database under bench/load.py). The default keeps the old cap of
        20 connections per module (docs/operations.md has the station's connection budget); a request
        beyond it waits for a connection (`pool_timeout`) instead of opening one.
        """
        self.url = url
        self.service = service
        self.engine: AsyncEngine = create_async_engine(
            url,
            pool_size=pool_size,
            max_overflow=max_overflow,
            pool_pre_ping=False,  # a disconnect invalidates the whole pool instead: no extra round trip per checkout
            pool_timeout=10,
            echo=echo,
            connect_args={"timeout": 5, "command_timeout": 30},
        )
        self.on_outbox_commit: Callable[[], None] | None = None
        self.sessionmaker = async_sessionmaker(
            self.engine, expire_on_commit=False, info={"quark_service": service, "quark_db": self}
        )
        # Same pool; its connections run statements in autocommit mode while a reader holds them. `read()` for
        # sessions; `read_engine.connect()` for a hot path's Core statement (no ORM session at all).
        self.read_engine: AsyncEngine = self.engine.execution_options(isolation_level="AUTOCOMMIT")
        self.read_sessionmaker = async_sessionmaker(
            self.read_engine,
            sync_session_class=ReadOnlySession,
            expire_on_commit=False,
            info={"quark_service": service, "quark_db": self},
        )

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        """A session with no transaction begun; the caller commits."""
        session = self.sessionmaker()
        try:
            yield session
        finally:
            await _close_quietly(session)

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncSession]:
        """A session for reads, outside any transaction: no BEGIN and ROLLBACK round trips around them.

        Each statement sees what was committed when it started, which is what the statements of a READ
        COMMITTED transaction (PostgreSQL's default, and ours) see too; only reads that need one snapshot
        across statements, or row locks, need `transaction()`. Writes raise `ReadOnlySessionError`.
        A read request costs ~80-170 us less CPU than through `session()` (docs/performance.md).
        """
        session = self.read_sessionmaker()
        try:
            yield session
        finally:
            # No transaction is open on its connection, so closing does no I/O and cannot be interrupted.
            await _close_or_invalidate(session)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """A session inside one transaction: committed on success, rolled back on error."""
        session = self.sessionmaker()
        try:
            async with session.begin():
                yield session
        finally:
            await _close_quietly(session)

    async def ping(self) -> None:
        async with self.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    async def dispose(self) -> None:
        await self.engine.dispose()


async def _close_quietly(session: AsyncSession) -> None:
    """Close a session; if that fails (its connection died, e.g. PostgreSQL restarted), drop the connection.

    Closing rolls back whatever is left open, which needs a live connection. Raising from here would
    replace the request's own outcome: after a response has started, FastAPI then aborts the
    connection and the client gets no response at all (found by tests/fault/test_postgres_restart.py).
    Shielded like `AsyncSession.__aexit__`, so a cancelled request still returns its connection cleanly.

    A session whose transaction has ended (`Database.transaction()` after its commit or rollback) holds no
    connection: closing it does no I/O, never suspends and so cannot be cancelled half way; it is closed
    inline. The shield's task cost ~80-130 us of CPU per transaction (bench/events.py, one event per
    transaction), a fifth of the whole transaction.
    """
    if not session.in_transaction():
        await _close_or_invalidate(session)
        return
    await asyncio.shield(asyncio.ensure_future(_close_or_invalidate(session)))


async def _close_or_invalidate(session: AsyncSession) -> None:
    try:
        await session.close()
    except Exception as exc:
        log.warning("closing a database session failed (%r); invalidating its connection", exc)
        try:
            await session.invalidate()
        except Exception as again:
            log.debug("invalidating the connection failed too: %r", again)


@event.listens_for(Session, "after_commit")
def _wake_outbox_relay(session: Session) -> None:
    """After a commit that wrote events, wake the relay so publishing does not wait for a poll."""
    if session.info.pop("quark_outbox_dirty", False):
        db = session.info.get("quark_db")
        if db is not None and db.on_outbox_commit is not None:
            db.on_outbox_commit()


@event.listens_for(Session, "after_rollback")
def _forget_outbox_writes(session: Session) -> None:
    session.info.pop("quark_outbox_dirty", None)


# --------------------------------------------------------------------------- migrations

MIGRATION_LOCK_ID = 0x51_55_41_52_4B  # "QUARK"


def alembic_config(migrations_dir: Path, database_url: str) -> Any:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(migrations_dir))
    cfg.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return cfg


def upgrade_database(migrations_dir: Path, database_url: str, revision: str = "head") -> None:
    """Apply a service's migrations (blocking; call from a thread inside an event loop)."""
    from alembic import command

    command.upgrade(alembic_config(migrations_dir, database_url), revision)


async def upgrade_database_async(migrations_dir: Path, database_url: str) -> None:
    await asyncio.to_thread(upgrade_database, migrations_dir, database_url)


def run_migrations_env(target_metadata: MetaData | list[MetaData]) -> None:
    """The body of every service's `migrations/env.py`: online migrations over asyncpg."""
    from alembic import context

    from quark_sdk.outbox import EVENT_METADATA

    metadatas = target_metadata if isinstance(target_metadata, list) else [target_metadata]
    metadatas = [*metadatas, EVENT_METADATA]
    url = context.config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("sqlalchemy.url is not set; run migrations through `quark migrate`")

    if context.is_offline_mode():
        context.configure(url=url, target_metadata=metadatas, literal_binds=True, compare_type=True)
        with context.begin_transaction():
            context.run_migrations()
        return

    def do_run(connection: Any) -> None:
        # Two instances starting at once must not both migrate: serialise on an advisory lock.
        connection.exec_driver_sql(f"SELECT pg_advisory_lock({MIGRATION_LOCK_ID})")
        try:
            context.configure(connection=connection, target_metadata=metadatas, compare_type=True)
            with context.begin_transaction():
                context.run_migrations()
        finally:
            connection.exec_driver_sql(f"SELECT pg_advisory_unlock({MIGRATION_LOCK_ID})")

    async def run_async() -> None:
        engine = create_async_engine(url)
        try:
            async with engine.connect() as connection:
                await connection.run_sync(do_run)
                await connection.commit()
        finally:
            await engine.dispose()

    asyncio.run(run_async())


# --------------------------------------------------------------------------- provisioning


def _server_and_name(database_url: str) -> tuple[str, str]:
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(database_url.replace("postgresql+asyncpg://", "postgresql://", 1))
    name = parts.path.lstrip("/")
    if not name or not name.replace("_", "").replace("-", "").isalnum():
        raise ValueError(f"not a database name Quark creates: {name!r}")
    return urlunsplit((parts.scheme, parts.netloc, "/postgres", parts.query, parts.fragment)), name


async def ensure_database_async(database_url: str) -> bool:
    """Create the database of `database_url` if it does not exist (a module's first start); True if created.

    Needs CREATEDB on the server (the embedded station has it); elsewhere the operator provisions databases
    (init-databases.sql) and this finds them there."""
    import asyncpg

    server, name = _server_and_name(database_url)
    conn = await asyncpg.connect(server, timeout=10)
    try:
        if await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
            return False
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        except asyncpg.DuplicateDatabaseError:  # another instance created it meanwhile
            return False
        log.warning("created database %s (first start of its module)", name)
        return True
    finally:
        await conn.close()


def ensure_database(database_url: str) -> bool:
    return asyncio.run(ensure_database_async(database_url))


def drop_database(database_url: str) -> None:
    """`quark remove --purge-data`: the module's database goes, connections included."""
    import asyncpg

    async def run() -> None:
        server, name = _server_and_name(database_url)
        conn = await asyncpg.connect(server, timeout=10)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()

    asyncio.run(run())
