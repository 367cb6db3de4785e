"""Event pipeline benchmark: the SDK (outbox → relay → JetStream → consumer → inbox) against raw nats-py.

Both run in the same session against the same embedded PostgreSQL and NATS
servers, producer and consumer in separate processes (as two services would be):

* raw:  producer `js.publish_async` → JetStream → pull consumer `fetch` + `ack`
* sdk:  producer transactions with `add_event` (one event per transaction, several
        writers) → OutboxRelay → JetStream → ConsumerRunner (inbox claim + a real
        insert per event, one commit per batch) → ack

Two measurements each: throughput (a burst of N events, events/s from first
write to last handled) and latency at a fixed offered rate (p50/p99 from the
moment the producer wrote the event to the moment the consumer handled it).

    .venv/bin/python bench/events.py            # N=20000, rate 500/s for 5 s
    .venv/bin/python bench/events.py --quick    # smaller, for a smoke run
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import uvloop  # what uvicorn runs the services on
from sqlalchemy import Column, Float, Integer, MetaData, String, Table, insert

from quark_sdk.config import to_async_url
from quark_sdk.db import Database
from quark_sdk.embedded import EmbeddedInfra
from quark_sdk.events import CloudEvent, Consumer, ConsumerRunner, EventBus, EventPayload, event_type
from quark_sdk.outbox import EVENT_METADATA, OutboxRelay, add_event

bench_metadata = MetaData()
effects = Table("bench_effects", bench_metadata, Column("id", Integer, primary_key=True),
                Column("event_id", String(64)), Column("t0", Float))


@event_type("quark.bench.pinged")
class Pinged(EventPayload):
    """Benchmark event."""

    n: int
    t0: float


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
    out.put("ready")
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
    out.put({"latencies": lat, "last": last})
    await nc.close()


def raw_consumer_proc(nats_url: str, stream: str, total: int, out: Any) -> None:
    uvloop.run(raw_consume(nats_url, stream, total, out))


async def raw_produce(nats_url: str, subject: str, total: int, rate: float | None) -> float:
    import nats

    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    start = time.time()
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
    await nc.close()
    return start


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
    start = await raw_produce(nats_url, subject, total, rate)
    result = out.get(timeout=600)
    proc.join(30)
    return summarise(result["latencies"], start, result["last"])


# ----------------------------------------------------------------------------- sdk


async def sdk_consume(db_url: str, nats_url: str, namespace: str, total: int, out: Any, write_effect: bool) -> None:
    db = Database(db_url, service="benchconsumer", pool_size=5)
    bus = EventBus(nats_url, service="benchconsumer", namespace=namespace)
    await bus.connect()
    lat: list[float] = []
    done = asyncio.Event()
    last = [0.0]
    consumer = Consumer("pings", batch_size=200)

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
    await runner.start()
    await runner.ready.wait()
    out.put("ready")
    await done.wait()
    await asyncio.sleep(0.2)  # let the final batch commit and ack
    await runner.stop()
    await bus.close()
    await db.dispose()
    out.put({"latencies": lat, "last": last[0]})


def sdk_consumer_proc(db_url: str, nats_url: str, namespace: str, total: int, out: Any, write_effect: bool) -> None:
    uvloop.run(sdk_consume(db_url, nats_url, namespace, total, out, write_effect))


async def sdk_produce(db_url: str, nats_url: str, namespace: str, total: int, rate: float | None,
                      per_tx: int, writers: int = 16) -> float:
    db = Database(db_url, service="benchproducer", pool_size=writers + 2)
    bus = EventBus(nats_url, service="benchproducer", namespace=namespace)
    await bus.connect()
    relay = OutboxRelay(db, bus, service="benchproducer", poll_interval=0.5)
    if per_tx == 0:  # drain: fill the outbox first (untimed), then time relay -> consumer alone
        now = time.time()
        for i in range(0, total, 1000):
            async with db.transaction() as session:
                for n in range(i, min(i + 1000, total)):
                    await add_event(session, Pinged(n=n, t0=now))
        start = time.time()
        await relay.start()
        while await relay.backlog():
            await asyncio.sleep(0.05)
        await relay.stop()
        await bus.close()
        await db.dispose()
        return start
    await relay.start()
    start = time.time()
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
    await relay.stop()
    await bus.close()
    await db.dispose()
    return start


async def run_sdk(infra: EmbeddedInfra, total: int, rate: float | None, *, per_tx: int = 1,
                  write_effect: bool = True) -> dict[str, float]:
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
    namespace = "b" + tag
    out: Any = mp.get_context("spawn").Queue()
    proc = mp.get_context("spawn").Process(target=sdk_consumer_proc,
                                           args=(urls["consumer"], infra.nats.url, namespace, total, out, write_effect))
    # The consumer binds to the producer's stream, so create it first.
    bus = EventBus(infra.nats.url, service="setup", namespace=namespace)
    await bus.connect()
    await bus.ensure_stream("bench")
    await bus.close()
    proc.start()
    assert out.get(timeout=60) == "ready"
    start = await sdk_produce(urls["producer"], infra.nats.url, namespace, total, rate, per_tx)
    result = out.get(timeout=600)
    proc.join(30)
    return summarise(result["latencies"], start, result["last"])


def summarise(latencies: list[float], start: float, last: float) -> dict[str, float]:
    return {
        "events": len(latencies),
        "throughput": len(latencies) / max(last - start, 1e-9),
        "p50_ms": percentile(latencies, 50) * 1000,
        "p99_ms": percentile(latencies, 99) * 1000,
        "mean_ms": statistics.fmean(latencies) * 1000,
    }


async def main_async(args: argparse.Namespace) -> int:
    infra = EmbeddedInfra(Path(tempfile.mkdtemp(prefix="quark-bench-")), persist_redis=False).start()
    try:
        paced_n = int(args.rate * args.seconds)
        variants = [
            ("raw nats-py", lambda n, r: run_raw(infra.nats.url, n, r)),
            ("sdk drain", lambda n, r: run_sdk(infra, n, None, per_tx=0, write_effect=False)),
            (f"sdk {args.per_tx}/tx", lambda n, r: run_sdk(infra, n, r, per_tx=args.per_tx, write_effect=False)),
            ("sdk 1/tx+row", lambda n, r: run_sdk(infra, n, r, per_tx=1, write_effect=True)),
        ]
        rows: list[tuple[str, dict[str, float], dict[str, float] | None]] = []
        for label, run in variants:
            burst = await run(args.events, None)
            paced = None if label == "sdk drain" else await run(paced_n, args.rate)
            rows.append((label, burst, paced))
        print(f"\nEvent pipeline: {args.events} events as fast as possible (burst), then {args.rate:.0f} events/s "
              f"for {args.seconds:.0f}s (paced); latency = producer write -> consumer handler")
        print("  sdk drain:    outbox pre-filled, then relay -> JetStream -> consumer -> inbox timed alone "
              "(the pipeline's throughput)")
        print(f"  sdk {args.per_tx}/tx:    producer writes {args.per_tx} events per transaction, handler does no I/O")
        print("  sdk 1/tx+row: one event per producer transaction, handler inserts a row (a typical service)\n")
        print(f"{'':<14} {'burst ev/s':>11} {'burst p50':>11} {'burst p99':>11} {'paced p50':>11} {'paced p99':>11}")
        for label, burst, paced in rows:
            tail = (f"{paced['p50_ms']:>9.2f}ms {paced['p99_ms']:>9.2f}ms" if paced else f"{'-':>11} {'-':>11}")
            head = (f"{burst['p50_ms']:>9.1f}ms {burst['p99_ms']:>9.1f}ms" if paced else f"{'-':>11} {'-':>11}")
            print(f"{label:<14} {burst['throughput']:>11.0f} {head} {tail}")
        raw_b, raw_p = rows[0][1], rows[0][2]
        assert raw_p is not None
        print()
        for label, burst, paced in rows[1:]:
            line = f"{label:<14} vs raw: throughput {burst['throughput'] / raw_b['throughput']:.2f}x"
            if paced:
                line += (f", paced p50 {paced['p50_ms'] / raw_p['p50_ms']:.1f}x, "
                         f"paced p99 {paced['p99_ms'] / raw_p['p99_ms']:.1f}x")
            print(line)
        drain = rows[1][1]
        typical = rows[3]
        assert typical[2] is not None
        p99_ratio = typical[2]["p99_ms"] / raw_p["p99_ms"]
        print(f"\ntargets (issue 2): SDK throughput >= 5000 ev/s -> {drain['throughput']:.0f} drained, "
              f"{typical[1]['throughput']:.0f} with a typical producer "
              f"({'met' if drain['throughput'] >= 5000 else 'not met'}); "
              f"paced p99 within 3x raw -> {p99_ratio:.1f}x ({'met' if p99_ratio <= 3 else 'not met'})")
    finally:
        infra.stop()
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=20000)
    parser.add_argument("--rate", type=float, default=500.0)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--per-tx", type=int, default=50, help="events per producer transaction (pipeline variant)")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.events, args.seconds = 3000, 2.0
    return uvloop.run(main_async(args))


if __name__ == "__main__":
    sys.exit(main())
