"""Transactional outbox (and its receiving twin, the inbox).

`add_event(session, payload)` writes the CloudEvent into `quark_outbox` in the
caller's transaction: if the state change rolls back, so does the event. The
`OutboxRelay` publishes pending rows in commit order with `Nats-Msg-Id` = event
id and then marks them sent; a relay that dies between the two republishes on
restart and JetStream's duplicate window drops the copy, while the consumer's
inbox makes even a late duplicate harmless. NATS being down only delays events.
"""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    bindparam,
    delete,
    func,
    select,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from quark_sdk import telemetry
from quark_sdk.db import NAMING_CONVENTION, Database
from quark_sdk.events import CloudEvent, EventBus, EventBusUnavailable, EventPayload
from quark_sdk.tasks import cancel_and_wait, wait_event

log = logging.getLogger("quark.outbox")

EVENT_METADATA = MetaData(naming_convention=NAMING_CONVENTION)

outbox_table = Table(
    "quark_outbox",
    EVENT_METADATA,
    Column("seq", BigInteger, primary_key=True, autoincrement=True),
    Column("id", String(64), nullable=False, unique=True),
    Column("type", String(256), nullable=False),
    Column("body", Text, nullable=False),
    Column("headers", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("published_at", DateTime(timezone=True), nullable=True),
    Column("attempts", Integer, nullable=False, server_default=text("0")),
    Index("ix_quark_outbox_pending", "seq", postgresql_where=text("published_at IS NULL")),
)

inbox_table = Table(
    "quark_inbox",
    EVENT_METADATA,
    Column("consumer", String(128), nullable=False),
    Column("event_id", String(128), nullable=False),
    Column("processed_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    PrimaryKeyConstraint("consumer", "event_id"),
)


# The relay's statements, run on the pooled connection's asyncpg driver (`OutboxRelay.publish_pending`): the relay
# is the SDK's own loop with no ORM objects, and through an `AsyncSession` each round cost ~3x the CPU of the same
# statements sent by asyncpg (docs/performance.md part 11). `= ANY(array)`: one prepared statement whatever the
# batch's size.
_RELAY_NO_FLUSH_WAIT = "SET LOCAL synchronous_commit = off"
_RELAY_CLAIM = ("SELECT seq, id, type, body, headers::text AS headers FROM quark_outbox WHERE published_at IS NULL "
                "ORDER BY seq LIMIT $1 FOR UPDATE SKIP LOCKED")
_RELAY_MARK_SENT = "UPDATE quark_outbox SET published_at = $2 WHERE seq = ANY($1::bigint[])"
_RELAY_COUNT_ATTEMPT = "UPDATE quark_outbox SET attempts = attempts + 1 WHERE seq = ANY($1::bigint[])"
# The inbox claim of a consumer's batch: one array parameter, so SQLAlchemy compiles it once and asyncpg
# prepares it once. A multi-row VALUES has no cache key: it was compiled anew for every batch (13-21 ms for
# 200 events, the largest share of the consumer's CPU in bench/events.py).
_CLAIM_INBOX = (
    pg_insert(inbox_table)
    .from_select(["consumer", "event_id"],
                 select(bindparam("consumer", type_=String), func.unnest(bindparam("ids", type_=ARRAY(String)))))
    .on_conflict_do_nothing(index_elements=["consumer", "event_id"])
    .returning(inbox_table.c.event_id)
)
# Built once: constructing the statement per event was a visible share of a chat message's CPU.
_INSERT_EVENT = outbox_table.insert()


async def add_event(
    session: AsyncSession, payload: EventPayload, *, subject: str | None = None, source: str | None = None
) -> CloudEvent:
    """Record an event in the caller's transaction; it is published after commit."""
    event, row = _outbox_row(session, payload, subject, source)
    await session.execute(_INSERT_EVENT, row)
    session.info["quark_outbox_dirty"] = True
    return event


class OutboxBatch:
    """Events of one transaction written with a single INSERT: for hot paths that record many events
    per transaction (a group commit of chat messages). `flush()` before the transaction commits —
    events added after the last flush are not written."""

    def __init__(self, session: AsyncSession, *, source: str | None = None) -> None:
        self.session = session
        self.source = source
        self.rows: list[dict[str, Any]] = []

    def add(self, payload: EventPayload, *, subject: str | None = None) -> CloudEvent:
        event, row = _outbox_row(self.session, payload, subject, self.source)
        self.rows.append(row)
        return event

    async def flush(self) -> None:
        if not self.rows:
            return
        rows, self.rows = self.rows, []
        await self.session.execute(_INSERT_EVENT, rows)
        self.session.info["quark_outbox_dirty"] = True


async def claim_inbox(session: AsyncSession, consumer: str, ids: list[str]) -> set[str]:
    """Insert the consumer's inbox rows in the caller's transaction; returns the ids not claimed before."""
    rows = await session.execute(_CLAIM_INBOX, {"consumer": consumer, "ids": list(dict.fromkeys(ids))})
    return set(rows.scalars().all())


def _outbox_row(
    session: AsyncSession, payload: EventPayload, subject: str | None, source: str | None
) -> tuple[CloudEvent, dict[str, Any]]:
    service = source or session.info.get("quark_service")
    if not service:
        raise RuntimeError("outbox events need a session from quark_sdk.db.Database (or an explicit source)")
    headers = telemetry.inject_trace_context({})
    event = CloudEvent.new(payload, source=f"quark/{service}", subject=subject, traceparent=headers.get("traceparent"))
    return event, {"id": event.id, "type": event.type, "body": event.to_bytes().decode(), "headers": headers}


class OutboxRelay:
    """Publishes committed outbox rows; several relays of one service share work via SKIP LOCKED."""

    def __init__(self, db: Database, bus: EventBus, *, service: str, batch_size: int = 500,
                 poll_interval: float = 1.0, linger: float = 0.0,
                 retention: timedelta = timedelta(hours=24)) -> None:
        self.db = db
        self.bus = bus
        self.service = service
        self.batch_size = batch_size
        self.poll_interval = poll_interval
        # Under load, rounds start at least `linger` seconds apart so that events committed meanwhile
        # share one transaction and one JetStream flush; an event arriving after a quiet spell goes at once.
        self.linger = linger
        self.retention = retention
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._last_purge = 0.0
        self._last_round = float("-inf")
        db.on_outbox_commit = self.wake

    def wake(self) -> None:
        self._wake.set()

    async def start(self) -> None:
        self._task = asyncio.create_task(self.run(), name=f"outbox-relay-{self.service}")

    async def stop(self) -> None:
        if self._task is not None:
            await cancel_and_wait(self._task)
            self._task = None

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        delay = self.poll_interval
        while True:
            if self.linger > 0:
                pause = self._last_round + self.linger - loop.time()
                if pause > 0:
                    await asyncio.sleep(pause)
            # Cleared before reading the table: a commit after this point wakes the next round.
            self._wake.clear()
            self._last_round = loop.time()
            try:
                published = await self.publish_pending()
                delay = self.poll_interval
                if published >= self.batch_size:
                    continue  # more waiting: don't sleep
                await self._maybe_purge()
            except asyncio.CancelledError:
                raise
            except EventBusUnavailable:
                delay = min(max(delay, 0.1) * 2, 2.0)
            except Exception as exc:
                log.warning("outbox relay for %s failed a round (%r); retrying", self.service, exc)
                delay = min(max(delay, 0.1) * 2, 5.0)
            await wait_event(self._wake, delay)

    async def publish_pending(self) -> int:
        """Publish one batch of pending events; returns how many were marked sent."""
        if not self.bus.is_connected:
            raise EventBusUnavailable("NATS not connected")
        async with self.db.engine.connect() as conn:
            driver: Any = (await conn.get_raw_connection()).driver_connection
            try:
                async with driver.transaction():
                    rows, results = await self._publish_batch(driver)
            except BaseException as exc:
                # SQLAlchemy never saw asyncpg's error, so what it would do is done here. A closed connection
                # means the server went away (a restart): every pooled connection is as dead, so the pool is
                # recycled as SQLAlchemy recycles it on a disconnect. A connection cancelled or timed out
                # mid-statement (BEGIN or ROLLBACK included) or left inside a transaction is dropped rather than
                # handed to the next request.
                if driver.is_closed():
                    await conn.invalidate()
                    await self.db.engine.dispose()
                elif isinstance(exc, (asyncio.CancelledError, TimeoutError)) or driver.is_in_transaction():
                    await conn.invalidate()
                raise
        if not rows:
            return 0
        sent = 0
        for r, ok in zip(rows, results, strict=True):
            if ok:
                sent += 1
                telemetry.EVENTS_PUBLISHED.labels(self.service, r["type"]).inc()
        if sent < len(rows):
            raise EventBusUnavailable(f"{len(rows) - sent} of {len(rows)} events not acknowledged by JetStream")
        return sent

    async def _publish_batch(self, driver: Any) -> tuple[list[Any], list[bool]]:
        """Claim a batch (SKIP LOCKED: relays of one service share the work), publish it, mark what JetStream
        acknowledged; in the caller's transaction."""
        # Losing this commit in a crash only means publishing again, which Nats-Msg-Id dedupe and the
        # consumers' inbox absorb; so skip the WAL flush wait that durability would cost here.
        await driver.execute(_RELAY_NO_FLUSH_WAIT)
        rows = await driver.fetch(_RELAY_CLAIM, self.batch_size)
        if not rows:
            telemetry.OUTBOX_BACKLOG.labels(self.service).set(0)
            return [], []
        results = await self.bus.publish_many(
            [(r["id"], r["type"], r["body"].encode(), json.loads(r["headers"]) or {}) for r in rows])
        sent = [r["seq"] for r, ok in zip(rows, results, strict=True) if ok]
        failed = [r["seq"] for r, ok in zip(rows, results, strict=True) if not ok]
        if sent:
            await driver.execute(_RELAY_MARK_SENT, sent, datetime.now(UTC))
        if failed:
            await driver.execute(_RELAY_COUNT_ATTEMPT, failed)
        return list(rows), results

    async def backlog(self) -> int:
        async with self.db.session() as session:
            n = await session.scalar(
                select(func.count()).select_from(outbox_table).where(outbox_table.c.published_at.is_(None))
            )
        telemetry.OUTBOX_BACKLOG.labels(self.service).set(n or 0)
        return int(n or 0)

    async def _maybe_purge(self) -> None:
        loop = asyncio.get_running_loop()
        if loop.time() - self._last_purge < 60:
            return
        self._last_purge = loop.time()
        cutoff = datetime.now(UTC) - self.retention
        async with self.db.transaction() as session:
            await session.execute(
                delete(outbox_table).where(outbox_table.c.published_at.is_not(None),
                                           outbox_table.c.published_at < cutoff)
            )
            # Inbox rows outlive the stream's max age, so no replay can re-apply an event.
            inbox_cutoff = datetime.now(UTC) - timedelta(seconds=EventBus.STREAM_MAX_AGE) - timedelta(days=1)
            await session.execute(delete(inbox_table).where(inbox_table.c.processed_at < inbox_cutoff))


def create_event_tables(bind: Any) -> None:
    """For a service's first migration: `create_event_tables(op.get_bind())`."""
    EVENT_METADATA.create_all(bind=bind, checkfirst=True)


def drop_event_tables(bind: Any) -> None:
    EVENT_METADATA.drop_all(bind=bind, checkfirst=True)
