"""Helpers for the fault tests: restartable servers of their own, the chaos module in processes, counts.

Each test that restarts a server gets a dedicated one (from the same pip wheels the session's servers
come from), so the session's PostgreSQL and NATS that other tests use are never disturbed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import asyncpg
import nats
import nats.js.errors
from chaosmod.module import module as chaos_module

from quark_sdk.embedded import EmbeddedNats, EmbeddedPostgres
from quark_sdk.events import dead_letter_stream, stream_for, subject_for
from quark_sdk.testing import ModuleProcess, QuarkTestEnv

HERE = str(Path(__file__).parent)
CHAOS_REF = "chaosmod.module:module"
CHAOS_DURABLE = "chaos-effects"
EVENT_TYPE = "quark.chaos.produced"


class RestartableNats:
    """A dedicated nats-server with JetStream file storage; stop/kill and start again on the same port and store."""

    def __init__(self, data_dir: Path) -> None:
        self.server = EmbeddedNats(data_dir)
        self.restarts = 0

    @property
    def url(self) -> str:
        return self.server.url

    def start(self) -> RestartableNats:
        self.server.start()
        return self

    def stop(self, *, hard: bool = False) -> None:
        if hard:
            self.server.kill()
        else:
            self.server.stop()

    def restart(self, *, hard: bool = False) -> None:
        self.stop(hard=hard)
        self.server.start()
        self.restarts += 1


class RestartablePostgres:
    """A dedicated embedded PostgreSQL cluster: fast shutdown and start again on the same port and data."""

    def __init__(self, data_dir: Path) -> None:
        self.server = EmbeddedPostgres(data_dir)

    @property
    def url(self) -> str:
        return self.server.url

    def start(self) -> RestartablePostgres:
        self.server.start()
        return self

    def stop(self) -> None:
        self.server.stop()


async def spawn_chaos(quark: QuarkTestEnv, *, database_url: str | None = None, **overrides: Any) -> ModuleProcess:
    """One chaos-module process; pass `database_url` to make it another instance of an existing one."""
    if database_url is not None:
        overrides["database_url"] = database_url
    return await quark.spawn(chaos_module, CHAOS_REF, pythonpath=[HERE], **overrides)


def asyncpg_url(database_url: str) -> str:
    return database_url.replace("postgresql+asyncpg://", "postgresql://")


@dataclass
class DbCounts:
    produced: int
    applied: int
    applied_more_than_once: int
    side_effects: int
    outbox_pending: int
    inbox: int


async def db_counts(database_url: str) -> DbCounts:
    conn = await asyncpg.connect(asyncpg_url(database_url), timeout=10)
    try:
        row = await conn.fetchrow(
            """SELECT (SELECT count(*) FROM produced) AS produced,
                      (SELECT count(*) FROM applied) AS applied,
                      (SELECT count(*) FROM applied WHERE applies > 1) AS twice,
                      (SELECT coalesce(max(n), 0) FROM counters WHERE name = 'side_effects') AS effects,
                      (SELECT count(*) FROM quark_outbox WHERE published_at IS NULL) AS pending,
                      (SELECT count(*) FROM quark_inbox) AS inbox"""
        )
        assert row is not None
        return DbCounts(
            int(row["produced"]),
            int(row["applied"]),
            int(row["twice"]),
            int(row["effects"]),
            int(row["pending"]),
            int(row["inbox"]),
        )
    finally:
        await conn.close()


async def outbox_rows(database_url: str) -> list[tuple[str, str, bool]]:
    """(event id, body, published) of every outbox row, in commit order."""
    conn = await asyncpg.connect(asyncpg_url(database_url), timeout=10)
    try:
        rows = await conn.fetch("SELECT id, body, published_at IS NOT NULL AS sent FROM quark_outbox ORDER BY seq")
        return [(r["id"], r["body"], bool(r["sent"])) for r in rows]
    finally:
        await conn.close()


async def missing_keys(database_url: str) -> list[str]:
    conn = await asyncpg.connect(asyncpg_url(database_url), timeout=10)
    try:
        rows = await conn.fetch("SELECT p.key FROM produced p LEFT JOIN applied a USING (key) WHERE a.key IS NULL")
        return [r["key"] for r in rows]
    finally:
        await conn.close()


@dataclass
class StreamCounts:
    stream_messages: int  # stored once per Nats-Msg-Id: more than produced means dedupe failed
    deliveries: int  # every delivery to the durable consumer, redeliveries included
    ack_pending: int
    dead_lettered: int
    undelivered: int = 0  # messages the consumer has not been handed yet


async def stream_counts(nats_url: str, namespace: str) -> StreamCounts:
    nc = await nats.connect(nats_url, connect_timeout=2, max_reconnect_attempts=1)
    try:
        jsm = nc.jsm()
        stream = await jsm.stream_info(stream_for("chaos", namespace))
        consumer = None
        with contextlib.suppress(nats.js.errors.NotFoundError):
            consumer = await jsm.consumer_info(stream_for("chaos", namespace), CHAOS_DURABLE)
        dlq = 0
        with contextlib.suppress(nats.js.errors.NotFoundError):
            dlq = int((await jsm.stream_info(dead_letter_stream(namespace))).state.messages)
        return StreamCounts(
            stream_messages=int(stream.state.messages),
            deliveries=int(consumer.delivered.consumer_seq if consumer and consumer.delivered else 0),
            ack_pending=int(consumer.num_ack_pending or 0) if consumer else 0,
            undelivered=int(consumer.num_pending or 0) if consumer else 0,
            dead_lettered=dlq,
        )
    finally:
        await nc.close()


async def republish(nats_url: str, namespace: str, event_id: str, body: bytes) -> bool:
    """Publish a copy with the same Nats-Msg-Id; returns the PubAck's `duplicate` flag."""
    nc = await nats.connect(nats_url, connect_timeout=2, max_reconnect_attempts=5, reconnect_time_wait=0.2)
    try:
        ack = await nc.jetstream().publish(
            subject_for(EVENT_TYPE, namespace), body, headers={"Nats-Msg-Id": event_id}, timeout=5
        )
        return bool(ack.duplicate)
    finally:
        await nc.close()


def report(name: str, **figures: Any) -> None:
    """Print the figures a fault test measured (visible with `pytest -s`, and in the -rA summary)."""
    flat = {k: (asdict(v) if hasattr(v, "__dataclass_fields__") else v) for k, v in figures.items()}
    print(f"\nFAULT {name}: {json.dumps(flat, sort_keys=True)}", file=sys.stderr, flush=True)


async def wait_all(*coros: Any) -> list[Any]:
    return list(await asyncio.gather(*coros))
