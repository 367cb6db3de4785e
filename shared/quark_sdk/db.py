"""One async SQLAlchemy engine per service, and Alembic migrations per service.

Each service owns one PostgreSQL database and its own schema history
(`services/<name>/migrations`). Sessions carry the service name in
`session.info` so the outbox knows the event source without being told.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import MetaData, event, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Session

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


class Database:
    """The engine and session factory of one service's database."""

    def __init__(self, url: str, *, service: str, pool_size: int = 10, echo: bool = False) -> None:
        self.url = url
        self.service = service
        self.engine: AsyncEngine = create_async_engine(
            url,
            pool_size=pool_size,
            max_overflow=pool_size,
            pool_pre_ping=False,  # a disconnect invalidates the whole pool instead: no extra round trip per checkout
            pool_timeout=10,
            echo=echo,
            connect_args={"timeout": 5, "command_timeout": 30},
        )
        self.on_outbox_commit: Callable[[], None] | None = None
        self.sessionmaker = async_sessionmaker(
            self.engine, expire_on_commit=False, info={"quark_service": service, "quark_db": self}
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
    """
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
