"""10,000 events through the SDK outbox while consumer processes are SIGKILLed and NATS restarts.

Modelled on nats-server's JetStream chaos tests: every event body carries a unique key, the
receiver records what it applied (a unique constraint plus a per-key application count and a
side-effect counter), and the test passes when every produced key was applied exactly once.
Three processes of the chaos module share one database and one durable consumer, so each runs a
relay (sharing the outbox through SKIP LOCKED) and consumes; the chaos kills them at random.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
import pytest
from fault_testkit import (
    RestartableNats,
    StreamCounts,
    db_counts,
    missing_keys,
    report,
    spawn_chaos,
    stream_counts,
)

from quark_sdk.testing import ModuleProcess, QuarkTestEnv, eventually

pytestmark = [pytest.mark.fleet, pytest.mark.slow, pytest.mark.timeout(600)]

EVENTS = 10_000
BATCH = 250
PROCESSES = 3
KILLS = 20
NATS_RESTARTS = 3


async def test_ten_thousand_events_survive_kills_and_nats_restarts(quark: QuarkTestEnv, scratch: Path) -> None:
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    bus = RestartableNats(scratch / "nats").start()
    t0 = time.monotonic()
    procs: list[ModuleProcess] = []
    try:
        first = await spawn_chaos(quark, nats_url=bus.url)
        db_url = first.settings.database_url if first.settings else None
        assert db_url
        procs = [
            first,
            *await asyncio.gather(
                *(spawn_chaos(quark, nats_url=bus.url, database_url=db_url) for _ in range(PROCESSES - 1))
            ),
        ]
        keys = [f"e{i:05d}-{uuid.uuid4().hex[:12]}" for i in range(EVENTS)]
        batches = [keys[i : i + BATCH] for i in range(0, EVENTS, BATCH)]
        state = {"kills": 0, "produce_retries": 0, "nats_restarts": 0}
        down: set[int] = set()

        async def produce() -> None:
            async with httpx.AsyncClient(timeout=15) as client:
                for batch in batches:
                    while True:  # retried (idempotently, same keys) until one live process commits it
                        live = [p for i, p in enumerate(procs) if i not in down]
                        target = rng.choice(live or procs)
                        try:
                            resp = await client.post(target.url + "/api/v1/chaos/produce", json={"keys": batch})
                            if resp.status_code == 201:
                                break
                        except httpx.HTTPError:
                            pass
                        state["produce_retries"] += 1
                        await asyncio.sleep(0.1)  # retry back-off, not synchronisation
                    await asyncio.sleep(rng.uniform(0.1, 0.6))  # arrival shape: spread over the chaos

        restart_after = set(rng.sample(range(3, KILLS), NATS_RESTARTS))
        restarting: set[asyncio.Task[None]] = set()

        start_seconds: list[float] = []

        async def revive(idx: int) -> None:
            began = time.monotonic()
            await asyncio.to_thread(procs[idx].start)
            start_seconds.append(time.monotonic() - began)
            down.discard(idx)

        async def chaos() -> None:
            while state["kills"] < KILLS:
                await asyncio.sleep(rng.uniform(0.2, 0.8))  # random kill timing
                live = [i for i in range(len(procs)) if i not in down]
                if len(live) < 2:
                    continue  # keep one process up so the kill pace is not bounded by start-up time
                idx = rng.choice(live)
                down.add(idx)
                procs[idx].kill()  # SIGKILL: no shutdown hooks, in-flight batches and relay rounds abandoned
                state["kills"] += 1
                task = asyncio.create_task(revive(idx))
                restarting.add(task)
                task.add_done_callback(restarting.discard)
                if state["kills"] in restart_after:
                    # NATS goes down while a process is dead and comes back on the same JetStream store;
                    # every other restart is a SIGKILL of nats-server rather than a clean stop.
                    await asyncio.to_thread(bus.restart, hard=state["nats_restarts"] % 2 == 1)
                    state["nats_restarts"] += 1
            await asyncio.gather(*restarting)

        await asyncio.gather(produce(), chaos())
        chaos_done = time.monotonic()

        async def all_applied() -> bool:
            counts = await db_counts(db_url)
            return counts.produced == EVENTS and counts.applied == EVENTS and counts.outbox_pending == 0

        try:
            # On a loaded machine the drain after the chaos can take minutes (redeliveries wait out their
            # ack wait); what must not happen is a stall. Wait while progress is being made, fail when the
            # counts stop moving for STALL_SECONDS short of every event applied.
            await _drained_without_stall(db_url, all_applied)
        except AssertionError:
            lost = await missing_keys(db_url)
            report(
                "outbox-chaos (FAILED)",
                seed=seed,
                db=await db_counts(db_url),
                nats=await stream_counts(bus.url, quark.namespace),
                missing=len(lost),
                sample=lost[:5],
                **state,
            )
            for p in procs:
                print(p.log_tail(20))
            raise
        drained = time.monotonic()
        counts = await db_counts(db_url)
        stream = await eventually(
            lambda: _settled(bus.url, quark.namespace), timeout=60, what="no delivery left unacknowledged"
        )
        report(
            "outbox-chaos",
            seed=seed,
            sent=EVENTS,
            applied=counts.applied,
            duplicated_effects=counts.applied_more_than_once,
            lost=EVENTS - counts.applied,
            side_effects=counts.side_effects,
            stored_in_stream=stream.stream_messages,
            deliveries=stream.deliveries,
            duplicate_deliveries=stream.deliveries - EVENTS,
            dead_lettered=stream.dead_lettered,
            processes=PROCESSES,
            **state,
            chaos_seconds=round(chaos_done - t0, 1),
            mean_restart_seconds=round(sum(start_seconds) / max(1, len(start_seconds)), 2),
            drain_seconds=round(drained - chaos_done, 1),
        )
        assert state["kills"] >= KILLS and state["nats_restarts"] >= NATS_RESTARTS
        assert counts.applied == EVENTS  # 0 lost
        assert counts.applied_more_than_once == 0  # 0 duplicate side effects
        assert counts.side_effects == EVENTS
        assert stream.stream_messages == EVENTS  # relay re-publications were dropped by Nats-Msg-Id dedupe
        assert stream.dead_lettered == 0
    finally:
        for p in procs:
            p.stop()
        bus.stop()


STALL_SECONDS = 90.0
DRAIN_DEADLINE = 900.0  # an outer bound only: a stall fails the test after STALL_SECONDS


async def _drained_without_stall(db_url: str, done: Callable[[], Awaitable[bool]]) -> None:
    """Every event applied: polled (`eventually`) for as long as the counts keep moving, failed once they have not
    moved for STALL_SECONDS (the relays and consumers restart at their own pace after the chaos)."""
    last_progress: object = None
    last_change = time.monotonic()

    async def drained_or_moving() -> bool:
        nonlocal last_progress, last_change
        if await done():
            return True
        counts = await db_counts(db_url)
        progress = (counts.produced, counts.applied, counts.outbox_pending)
        if progress != last_progress:
            last_progress, last_change = progress, time.monotonic()
        elif time.monotonic() - last_change > STALL_SECONDS:
            raise AssertionError(f"no progress for {STALL_SECONDS:.0f} s short of every event applied: {counts}")
        return False

    await eventually(drained_or_moving, timeout=DRAIN_DEADLINE, interval=0.25, what="every event applied")


async def _settled(url: str, namespace: str) -> StreamCounts | None:
    counts = await stream_counts(url, namespace)
    return counts if counts.ack_pending == 0 else None
