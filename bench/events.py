"""Event pipeline benchmark: the SDK (outbox → relay → JetStream → consumer → inbox) against raw nats-py.

Both run in the same session against the same embedded PostgreSQL and NATS
servers, producer and consumer in separate processes (as two services would be):

* raw:  producer `js.publish_async` → JetStream → pull consumer `fetch` + `ack`
* sdk:  producer transactions with `add_event` (one event per transaction, several
        writers) → OutboxRelay → JetStream → ConsumerRunner (inbox claim + a real
        insert per event, one commit per batch) → ack
* hand: the same durability written by hand with asyncpg and nats-py (the fair
        baseline of issue #21): the event row committed in the producer's transaction,
        a relay that publishes with Nats-Msg-Id and marks the rows sent, a durable pull
        consumer whose transaction writes the inbox rows and a domain row per event,
        acking after commit; same tables, stream, payloads and batch sizes as the SDK

Two measurements each: throughput (a burst of N events, events/s from first
write to last handled) and latency at a fixed offered rate (p50/p99 from the
moment the producer wrote the event to the moment the consumer handled it).

    .venv/bin/python bench/events.py            # N=20000, rate 500/s for 5 s
    .venv/bin/python bench/events.py --quick    # smaller, for a smoke run
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import multiprocessing as mp
import os
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import uvloop  # what uvicorn runs the services on
from sqlalchemy import Column, Float, Integer, MetaData, String, Table, insert

from quark_sdk.app import GC_YOUNG_THRESHOLD
from quark_sdk.config import to_async_url
from quark_sdk.db import Database
from quark_sdk.embedded import EmbeddedInfra
from quark_sdk.events import CloudEvent, Consumer, ConsumerRunner, EventBus, EventPayload, event_type, subject_for
from quark_sdk.outbox import EVENT_METADATA, OutboxRelay, add_event

bench_metadata = MetaData()
effects = Table("bench_effects", bench_metadata, Column("id", Integer, primary_key=True),
                Column("event_id", String(64)), Column("t0", Float))


@event_type("quark.bench.pinged")
class Pinged(EventPayload):
    """Benchmark event."""

    n: int
    t0: float


def serving_gc() -> None:
    """The garbage collector as in a module's serving process (`quark_sdk.app.FreezeHeapAfterStartup`): the heap
    built so far frozen, the youngest generation collected every 10,000 allocations. Every producer and consumer,
    hand-written and SDK alike, calls this once set up, unless `--gc default` (QUARK_BENCH_GC=default)."""
    if os.environ.get("QUARK_BENCH_GC", "service") == "service":
        gc.collect()
        gc.freeze()
        gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])


async def open_connections(db: Database, n: int) -> None:
    """Open `n` pooled connections before the timed part, as the hand-written pools do (`min_size`): the SDK's pool
    opens them on demand, and a first transaction that has to open one waits for a backend start and asyncpg's
    type introspection (tens of ms, which landed in the paced p99)."""
    from sqlalchemy import text

    holding = 0
    everyone = asyncio.Event()

    async def hold() -> None:
        nonlocal holding
        async with db.transaction() as session:
            await session.execute(text("SELECT 1"))
            holding += 1
            if holding == n:
                everyone.set()
            await everyone.wait()

    await asyncio.gather(*(hold() for _ in range(n)))


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


# ----------------------------------------------------------------------------- raw


async def raw_consume(nats_url: str, stream: str, total: int, out: Any) -> None:
    import nats
    from nats.js import api

    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    await js._jsm.add_consumer(stream, config=api.ConsumerConfig(durable_name="raw", ack_policy=api.AckPolicy.EXPLICIT,
                                                                   max_ack_pending=20000))
    sub = await js.pull_subscribe_bind(durable="raw", stream=stream)
    serving_gc()
    out.put("ready")
    cpu0 = time.process_time()
    lat: list[float] = []
    last = 0.0
    while len(lat) < total:
        try:
            msgs = await sub.fetch(200, timeout=1)
        except nats.errors.TimeoutError:
            continue
        for m in msgs:
            now = time.time()
            lat.append(now - json.loads(m.data)["data"]["t0"])
            await m.ack()
            last = now
    out.put({"latencies": lat, "last": last, "cpu": time.process_time() - cpu0})
    await nc.close()


def raw_consumer_proc(nats_url: str, stream: str, total: int, out: Any) -> None:
    uvloop.run(raw_consume(nats_url, stream, total, out))


async def raw_produce(nats_url: str, subject: str, total: int, rate: float | None) -> tuple[float, float]:
    import nats

    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    serving_gc()
    start, cpu0 = time.time(), time.process_time()
    futures = []
    for i in range(total):
        if rate:
            target = start + i / rate
            delay = target - time.time()
            if delay > 0:
                await asyncio.sleep(delay)
        ev = CloudEvent.new(Pinged(n=i, t0=time.time()), source="quark/bench")
        futures.append(await js.publish_async(subject, ev.to_bytes(), headers={"Nats-Msg-Id": ev.id}))
    await asyncio.gather(*futures)
    cpu = time.process_time() - cpu0
    await nc.close()
    return start, cpu


async def run_raw(nats_url: str, total: int, rate: float | None) -> dict[str, float]:
    import nats

    name = "RAW_" + uuid.uuid4().hex[:8].upper()
    subject = name.lower() + ".quark.bench.pinged"
    nc = await nats.connect(nats_url)
    await nc.jetstream().add_stream(name=name, subjects=[name.lower() + ".>"], duplicate_window=120)
    await nc.close()
    out: Any = mp.get_context("spawn").Queue()
    proc = mp.get_context("spawn").Process(target=raw_consumer_proc, args=(nats_url, name, total, out))
    proc.start()
    assert out.get(timeout=60) == "ready"
    start, cpu = await raw_produce(nats_url, subject, total, rate)
    result = out.get(timeout=600)
    proc.join(30)
    return summarise(result, start, cpu)


# ----------------------------------------------------------------------------- sdk


async def sdk_consume(db_url: str, nats_url: str, namespace: str, total: int, out: Any, write_effect: bool) -> None:
    db = Database(db_url, service="benchconsumer", pool_size=5)
    bus = EventBus(nats_url, service="benchconsumer", namespace=namespace)
    await bus.connect()
    lat: list[float] = []
    done = asyncio.Event()
    last = [0.0]
    consumer: Consumer[None] = Consumer("pings", batch_size=200)

    @consumer.on("quark.bench.pinged")
    async def handle(rt: None, session: Any, event: CloudEvent) -> None:
        t0 = event.data["t0"]
        if write_effect:
            await session.execute(insert(effects).values(event_id=event.id, t0=t0))
        now = time.time()
        lat.append(now - t0)
        last[0] = now
        if len(lat) >= total:
            done.set()

    runner = ConsumerRunner(consumer, bus=bus, db=db, service="benchconsumer")
    await open_connections(db, 1)  # the hand-written consumer's pool opens one (min_size=1)
    await runner.start()
    await runner.ready.wait()
    serving_gc()
    out.put("ready")
    cpu0 = time.process_time()
    await done.wait()
    await asyncio.sleep(0.2)  # let the final batch commit and ack
    await runner.stop()
    await bus.close()
    await db.dispose()
    out.put({"latencies": lat, "last": last[0], "cpu": time.process_time() - cpu0})


def sdk_consumer_proc(db_url: str, nats_url: str, namespace: str, total: int, out: Any, write_effect: bool) -> None:
    uvloop.run(sdk_consume(db_url, nats_url, namespace, total, out, write_effect))


async def sdk_produce(db_url: str, nats_url: str, namespace: str, total: int, rate: float | None,
                      per_tx: int, writers: int = 16) -> tuple[float, float]:
    db = Database(db_url, service="benchproducer", pool_size=writers + 2)
    await open_connections(db, writers + 2)  # as the hand-written producer's pool (min_size=writers + 2)
    bus = EventBus(nats_url, service="benchproducer", namespace=namespace)
    await bus.connect()
    relay = OutboxRelay(db, bus, service="benchproducer", poll_interval=0.5)
    if per_tx == 0:  # drain: fill the outbox first (untimed), then time relay -> consumer alone
        now = time.time()
        for i in range(0, total, 1000):
            async with db.transaction() as session:
                for n in range(i, min(i + 1000, total)):
                    await add_event(session, Pinged(n=n, t0=now))
        serving_gc()
        start, cpu0 = time.time(), time.process_time()
        await relay.start()
        while await relay.backlog():
            await asyncio.sleep(0.05)
        cpu = time.process_time() - cpu0
        await relay.stop()
        await bus.close()
        await db.dispose()
        return start, cpu
    serving_gc()
    await relay.start()
    start, cpu0 = time.time(), time.process_time()
    counter = iter(range(0, total, per_tx))

    async def writer() -> None:
        for i in counter:
            if rate:
                delay = start + i / rate - time.time()
                if delay > 0:
                    await asyncio.sleep(delay)
            async with db.transaction() as session:
                for n in range(i, min(i + per_tx, total)):
                    await add_event(session, Pinged(n=n, t0=time.time()))

    await asyncio.gather(*(writer() for _ in range(writers)))
    while await relay.backlog():
        await asyncio.sleep(0.05)
    cpu = time.process_time() - cpu0
    await relay.stop()
    await bus.close()
    await db.dispose()
    return start, cpu


async def bench_databases(infra: EmbeddedInfra) -> tuple[dict[str, str], str]:
    """Fresh producer and consumer databases with the SDK's event tables; and a fresh namespace."""
    import asyncpg

    tag = uuid.uuid4().hex[:8]
    urls = {}
    conn = await asyncpg.connect(infra.postgres.url)
    for role in ("producer", "consumer"):
        await conn.execute(f"CREATE DATABASE bench_{role}_{tag}")
        urls[role] = to_async_url(infra.postgres.dsn(f"bench_{role}_{tag}"))
    await conn.close()
    for url in urls.values():
        db = Database(url, service="setup")
        async with db.engine.begin() as c:
            await c.run_sync(EVENT_METADATA.create_all)
            await c.run_sync(bench_metadata.create_all)
        await db.dispose()
    return urls, "b" + tag


async def bench_stream(infra: EmbeddedInfra, namespace: str) -> str:
    """The consumer binds to the producer's stream, so create it first (the SDK's stream config)."""
    bus = EventBus(infra.nats.url, service="setup", namespace=namespace)
    await bus.connect()
    name = await bus.ensure_stream("bench")
    await bus.close()
    return name


async def run_sdk(infra: EmbeddedInfra, total: int, rate: float | None, *, per_tx: int = 1,
                  write_effect: bool = True) -> dict[str, float]:
    urls, namespace = await bench_databases(infra)
    await bench_stream(infra, namespace)
    out: Any = mp.get_context("spawn").Queue()
    proc = mp.get_context("spawn").Process(target=sdk_consumer_proc,
                                           args=(urls["consumer"], infra.nats.url, namespace, total, out, write_effect))
    proc.start()
    assert out.get(timeout=60) == "ready"
    start, cpu = await sdk_produce(urls["producer"], infra.nats.url, namespace, total, rate, per_tx)
    result = out.get(timeout=600)
    proc.join(30)
    return summarise(result, start, cpu)


# ----------------------------------------------------------------------------- hand-written outbox + inbox
# No SDK code on the timed path: asyncpg, nats-py and json only. The tables, the stream (created by the
# setup through EventBus, so its storage, limits and duplicate window are the SDK's), the envelope and the
# batch sizes (relay 500, fetch 200, max_ack_pending 1000, 16 writers) are the SDK's.

HAND_CLAIM = ("SELECT seq, id, body FROM quark_outbox WHERE published_at IS NULL ORDER BY seq LIMIT 500 "
              "FOR UPDATE SKIP LOCKED")
HAND_MARK_SENT = "UPDATE quark_outbox SET published_at = now() WHERE seq = ANY($1::bigint[])"
HAND_INSERT_EVENT = "INSERT INTO quark_outbox (id, type, body, headers) VALUES ($1, $2, $3, '{}'::jsonb)"
HAND_INBOX = ("INSERT INTO quark_inbox (consumer, event_id) SELECT $1, unnest($2::varchar[]) "
              "ON CONFLICT (consumer, event_id) DO NOTHING RETURNING event_id")
HAND_EFFECT = "INSERT INTO bench_effects (event_id, t0) VALUES ($1, $2)"


def plain_dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


def hand_envelope(n: int, t0: float) -> tuple[str, str]:
    """The CloudEvents envelope the SDK writes, built with json.dumps."""
    event_id = str(uuid.uuid4())
    body = json.dumps({"specversion": "1.0", "id": event_id, "source": "quark/benchproducer",
                       "type": "quark.bench.pinged", "time": datetime.now(UTC).isoformat(),
                       "datacontenttype": "application/json", "data": {"n": n, "t0": t0}},
                      separators=(",", ":"))
    return event_id, body


async def hand_consume(db_url: str, nats_url: str, stream: str, subject: str, total: int, out: Any,
                       write_effect: bool) -> None:
    import asyncpg
    import nats
    from nats.js import api

    pool = await asyncpg.create_pool(plain_dsn(db_url), min_size=1, max_size=5)
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    await js._jsm.add_consumer(stream, config=api.ConsumerConfig(
        durable_name="hand", ack_policy=api.AckPolicy.EXPLICIT, max_deliver=5, ack_wait=30,
        max_ack_pending=1000, filter_subject=subject))
    sub = await js.pull_subscribe_bind(durable="hand", stream=stream)
    serving_gc()
    out.put("ready")
    cpu0 = time.process_time()
    lat: list[float] = []
    last = 0.0
    while len(lat) < total:
        try:
            msgs = await sub.fetch(200, timeout=1)
        except (nats.errors.TimeoutError, TimeoutError):
            continue
        events = [json.loads(m.data) for m in msgs]
        async with pool.acquire() as conn, conn.transaction():
            fresh = {r[0] for r in await conn.fetch(HAND_INBOX, "hand", [e["id"] for e in events])}
            for event in events:
                if event["id"] not in fresh:
                    continue  # already applied: a redelivery
                fresh.discard(event["id"])
                t0 = event["data"]["t0"]
                if write_effect:
                    await conn.execute(HAND_EFFECT, event["id"], t0)
                now = time.time()
                lat.append(now - t0)
                last = now
        for m in msgs:  # after the commit: a crash before it redelivers, and the inbox absorbs it
            await m.ack()
    out.put({"latencies": lat, "last": last, "cpu": time.process_time() - cpu0})
    await nc.close()
    await pool.close()


def hand_consumer_proc(db_url: str, nats_url: str, stream: str, subject: str, total: int, out: Any,
                       write_effect: bool) -> None:
    uvloop.run(hand_consume(db_url, nats_url, stream, subject, total, out, write_effect))


class HandRelay:
    """Publishes committed outbox rows (Nats-Msg-Id = event id), then marks them sent in the same
    transaction; woken by the producer after each commit, polling every 0.5 s otherwise."""

    def __init__(self, pool: Any, js: Any, subject: str) -> None:
        self.pool, self.js, self.subject = pool, js, subject
        self.wake = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    async def publish_pending(self) -> int:
        async with self.pool.acquire() as conn, conn.transaction():
            # As the SDK: losing this commit only republishes, which Nats-Msg-Id dedupe absorbs.
            await conn.execute("SET LOCAL synchronous_commit = off")
            rows = await conn.fetch(HAND_CLAIM)
            if not rows:
                return 0
            acks = [await self.js.publish_async(self.subject, r["body"].encode(), headers={"Nats-Msg-Id": r["id"]})
                    for r in rows]
            await asyncio.gather(*acks)
            await conn.execute(HAND_MARK_SENT, [r["seq"] for r in rows])
            return len(rows)

    async def run(self) -> None:
        while True:
            self.wake.clear()  # before reading: a commit after this wakes the next round
            if await self.publish_pending() >= 500:
                continue
            # Not asyncio.wait_for: on Python 3.11 it swallows the task's cancellation when the event is set
            # at the same moment, and then `relay.task` never ends (a --quick run hung on it for 13 minutes).
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(0.5):
                    await self.wake.wait()

    async def backlog(self) -> int:
        async with self.pool.acquire() as conn:
            return int(await conn.fetchval("SELECT count(*) FROM quark_outbox WHERE published_at IS NULL"))


async def hand_produce(db_url: str, nats_url: str, subject: str, total: int, rate: float | None,
                       writers: int = 16) -> tuple[float, float]:
    import asyncpg
    import nats

    pool = await asyncpg.create_pool(plain_dsn(db_url), min_size=writers + 2, max_size=writers + 2)
    nc = await nats.connect(nats_url)
    relay = HandRelay(pool, nc.jetstream(), subject)
    if writers == 0:  # drain: fill the outbox first (untimed), then time relay -> consumer alone
        now = time.time()
        for i in range(0, total, 1000):
            envelopes = [hand_envelope(n, now) for n in range(i, min(i + 1000, total))]
            async with pool.acquire() as conn, conn.transaction():
                rows = [(eid, "quark.bench.pinged", body) for eid, body in envelopes]
                await conn.executemany(HAND_INSERT_EVENT, rows)
    serving_gc()
    start, cpu0 = time.time(), time.process_time()
    relay.task = asyncio.create_task(relay.run())
    counter = iter(range(total)) if writers else iter(())

    async def writer() -> None:
        for n in counter:
            if rate:
                delay = start + n / rate - time.time()
                if delay > 0:
                    await asyncio.sleep(delay)
            event_id, body = hand_envelope(n, time.time())
            async with pool.acquire() as conn, conn.transaction():
                await conn.execute(HAND_INSERT_EVENT, event_id, "quark.bench.pinged", body)
            relay.wake.set()

    await asyncio.gather(*(writer() for _ in range(writers)))
    while await relay.backlog():
        await asyncio.sleep(0.05)
    cpu = time.process_time() - cpu0
    relay.task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await relay.task
    await nc.close()
    await pool.close()
    return start, cpu


async def run_hand(infra: EmbeddedInfra, total: int, rate: float | None, *, drain: bool = False,
                   write_effect: bool = True) -> dict[str, float]:
    urls, namespace = await bench_databases(infra)
    stream = await bench_stream(infra, namespace)
    subject = subject_for("quark.bench.pinged", namespace)
    out: Any = mp.get_context("spawn").Queue()
    proc = mp.get_context("spawn").Process(target=hand_consumer_proc, args=(
        urls["consumer"], infra.nats.url, stream, subject, total, out, write_effect))
    proc.start()
    assert out.get(timeout=60) == "ready"
    start, cpu = await hand_produce(urls["producer"], infra.nats.url, subject, total, None if drain else rate,
                               writers=0 if drain else 16)
    result = out.get(timeout=600)
    proc.join(30)
    return summarise(result, start, cpu)


def summarise(result: dict[str, Any], start: float, producer_cpu: float) -> dict[str, float]:
    latencies, last = result["latencies"], result["last"]
    return {
        "events": len(latencies),
        "throughput": len(latencies) / max(last - start, 1e-9),
        # CPU time per event of the producing process (its writers and relay) and of the consumer's: steadier
        # than throughput on a shared machine.
        "producer_us": producer_cpu / max(len(latencies), 1) * 1e6,
        "consumer_us": result["cpu"] / max(len(latencies), 1) * 1e6,
        "p50_ms": percentile(latencies, 50) * 1000,
        "p99_ms": percentile(latencies, 99) * 1000,
        "mean_ms": statistics.fmean(latencies) * 1000,
    }


async def main_async(args: argparse.Namespace) -> int:
    infra = EmbeddedInfra(Path(tempfile.mkdtemp(prefix="quark-bench-")), persist_redis=False).start()
    try:
        paced_n = int(args.rate * args.seconds)
        # Each hand-written variant runs right before its SDK twin, so both see the same machine load.
        variants: list[tuple[str, Any, bool]] = [
            ("raw nats-py", lambda n, r: run_raw(infra.nats.url, n, r), True),
            ("hand drain", lambda n, r: run_hand(infra, n, None, drain=True, write_effect=False), False),
            ("sdk drain", lambda n, r: run_sdk(infra, n, None, per_tx=0, write_effect=False), False),
            ("hand 1/tx+row", lambda n, r: run_hand(infra, n, r, write_effect=True), True),
            ("sdk 1/tx+row", lambda n, r: run_sdk(infra, n, r, per_tx=1, write_effect=True), True),
            (f"sdk {args.per_tx}/tx", lambda n, r: run_sdk(infra, n, r, per_tx=args.per_tx, write_effect=False),
             True),
        ]
        runs: dict[str, list[tuple[dict[str, float], dict[str, float] | None]]] = {v[0]: [] for v in variants}
        for _ in range(args.rounds):
            for label, run, paced_too in variants:
                burst = await run(args.events, None)
                paced = await run(paced_n, args.rate) if paced_too else None
                runs[label].append((burst, paced))
        rows = {label: median_run(results) for label, results in runs.items()}
        print(f"\nEvent pipeline: {args.events} events as fast as possible (burst), then {args.rate:.0f} events/s "
              f"for {args.seconds:.0f}s (paced); latency = producer write -> consumer handler"
              + (f"; median of {args.rounds} rounds" if args.rounds > 1 else "")
              + f"; garbage collector: {args.gc}")
        print("  drain:    outbox pre-filled, then relay -> JetStream -> consumer -> inbox timed alone "
              "(the pipeline's throughput)")
        print("  1/tx+row: one event per producer transaction (16 writers), handler inserts a row (a typical "
              "service)")
        print("  hand:     the same outbox + inbox durability written with asyncpg and nats-py (the fair baseline)")
        print(f"  sdk {args.per_tx}/tx: producer writes {args.per_tx} events per transaction, handler does no I/O\n")
        print(f"{'':<14} {'burst ev/s':>11} {'burst p50':>11} {'burst p99':>11} {'paced p50':>11} {'paced p99':>11}"
              f" {'prod us/ev':>11} {'cons us/ev':>11}")
        for label, (burst, paced) in rows.items():
            tail = (f"{paced['p50_ms']:>9.2f}ms {paced['p99_ms']:>9.2f}ms" if paced else f"{'-':>11} {'-':>11}")
            head = (f"{burst['p50_ms']:>9.1f}ms {burst['p99_ms']:>9.1f}ms" if paced else f"{'-':>11} {'-':>11}")
            cpu = f"{burst['producer_us']:>11.0f} {burst['consumer_us']:>11.0f}"
            print(f"{label:<14} {burst['throughput']:>11.0f} {head} {tail} {cpu}")
        print("  (prod/cons us/ev: CPU time per event of the producing process, writers and relay, and of the "
              "consumer's, in the burst)")
        print()
        verdicts = []
        for sdk, hand in (("sdk drain", "hand drain"), ("sdk 1/tx+row", "hand 1/tx+row")):
            (sb, sp), (hb, hp) = rows[sdk], rows[hand]
            tput = sb["throughput"] / hb["throughput"]
            line = f"{sdk:<14} vs {hand}: throughput {tput:.2f}x"
            verdicts.append(f"{sdk} throughput {tput:.2f}x ({'met' if tput >= 0.8 else 'not met'})")
            if sp and hp:
                p99 = sp["p99_ms"] / hp["p99_ms"]
                line += f", paced p50 {sp['p50_ms'] / hp['p50_ms']:.2f}x, paced p99 {p99:.2f}x"
                verdicts.append(f"{sdk} paced p99 {p99:.2f}x ({'met' if p99 <= 1.5 else 'not met'})")
            print(line)
        raw_b, raw_p = rows["raw nats-py"]
        assert raw_p is not None
        for label, (burst, paced) in rows.items():
            if label == "raw nats-py":
                continue
            line = f"{label:<14} vs raw (the floor): throughput {burst['throughput'] / raw_b['throughput']:.2f}x"
            if paced:
                line += (f", paced p50 {paced['p50_ms'] / raw_p['p50_ms']:.1f}x, "
                         f"paced p99 {paced['p99_ms'] / raw_p['p99_ms']:.1f}x")
            print(line)
        print("\ntargets (issue 21, SDK vs the hand-written baseline: p99 <= 1.5x, throughput >= 0.8x): "
              + "; ".join(verdicts))
        drain = rows["sdk drain"][0]
        print(f"target (issue 2): SDK throughput >= 5000 ev/s -> {drain['throughput']:.0f} drained "
              f"({'met' if drain['throughput'] >= 5000 else 'not met'})")
    finally:
        infra.stop()
    return 0


def median_run(results: list[tuple[dict[str, float], dict[str, float] | None]]
               ) -> tuple[dict[str, float], dict[str, float] | None]:
    """Each figure's median over the rounds."""
    def med(dicts: list[dict[str, float]]) -> dict[str, float]:
        return {k: statistics.median(d[k] for d in dicts) for k in dicts[0]}

    bursts = [b for b, _ in results]
    paced = [p for _, p in results if p is not None]
    return med(bursts), (med(paced) if paced else None)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=20000)
    parser.add_argument("--rate", type=float, default=500.0)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--per-tx", type=int, default=50, help="events per producer transaction (pipeline variant)")
    parser.add_argument("--rounds", type=int, default=1, help="repeat every variant; figures are medians")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--gc", choices=["service", "default"], default="service",
                        help="service: every producer and consumer freezes its heap once set up and collects the "
                             "youngest generation every 10,000 allocations, as a module's serving process does; "
                             "default: Python's collector settings")
    args = parser.parse_args()
    os.environ["QUARK_BENCH_GC"] = args.gc  # the spawned consumers read it too
    if args.quick:
        args.events, args.seconds = 3000, 2.0
    return uvloop.run(main_async(args))


if __name__ == "__main__":
    sys.exit(main())
