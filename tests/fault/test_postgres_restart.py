"""PostgreSQL restarted under load: the service answers 503 problems during the outage and nothing else.

A dedicated embedded PostgreSQL cluster (so the session's servers are not disturbed) backs one
chaos-module process; client tasks keep writing (an outbox event per request) and reading while the
cluster is shut down (fast shutdown: sessions terminated) and started again on the same port and data.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from chaosmod.module import module as chaos_module
from fault_testkit import RestartablePostgres, db_counts, report, spawn_chaos

from quark_sdk.config import to_async_url
from quark_sdk.db import upgrade_database
from quark_sdk.testing import QuarkTestEnv, eventually

pytestmark = [pytest.mark.fleet, pytest.mark.slow]

CLIENTS = 4
RECOVERY_LIMIT = 30.0


@dataclass
class Outcome:
    at: float
    status: int  # 0 = no HTTP response at all
    problem: bool
    write: bool
    error: str = ""


async def test_postgres_restart_under_load_gives_only_503s(quark: QuarkTestEnv, scratch: Path) -> None:
    pg = await asyncio.to_thread(RestartablePostgres(scratch / "pg" / "data").start)
    try:
        await asyncio.to_thread(pg.server.ensure_database, "chaos")
        db_url = to_async_url(pg.server.dsn("chaos"))
        await asyncio.to_thread(upgrade_database, chaos_module.migrations_dir, db_url)
        proc = await spawn_chaos(quark, postgres_url=pg.url, database_url=db_url)
        outcomes: list[Outcome] = []
        readiness: list[tuple[float, int]] = []
        stop = asyncio.Event()

        async def client_loop(n: int) -> None:
            async with httpx.AsyncClient(base_url=proc.url, timeout=15) as client:
                i = 0
                while not stop.is_set():
                    i += 1
                    write = i % 2 == 0
                    try:
                        if write:
                            resp = await client.post(
                                "/api/v1/chaos/produce", json={"keys": [f"c{n}-{i}-{uuid.uuid4().hex[:6]}"]}
                            )
                        else:
                            resp = await client.get("/api/v1/chaos/stats")
                        problem = resp.headers.get("content-type", "").startswith("application/problem+json")
                        outcomes.append(Outcome(time.monotonic(), resp.status_code, problem, write))
                    except httpx.HTTPError as exc:
                        outcomes.append(Outcome(time.monotonic(), 0, False, write, repr(exc)))

        async def readiness_loop() -> None:
            async with httpx.AsyncClient(base_url=proc.url, timeout=15) as client:
                while not stop.is_set():
                    resp = await client.get("/health/ready")
                    readiness.append((time.monotonic(), resp.status_code))
                    await asyncio.sleep(0.1)  # probe cadence, like a kubelet's period

        tasks = [asyncio.create_task(client_loop(n)) for n in range(CLIENTS)]
        tasks.append(asyncio.create_task(readiness_loop()))
        try:
            await eventually(
                lambda: sum(o.status in (200, 201) for o in outcomes) >= 100, timeout=30, what="load running"
            )
            down_at = time.monotonic()
            await asyncio.to_thread(pg.stop)
            await eventually(
                lambda: any(s == 503 for t, s in readiness if t > down_at), timeout=15, what="readiness red"
            )
            await eventually(
                lambda: sum(o.status == 503 for o in outcomes if o.at > down_at) >= 20,
                timeout=15,
                what="503s during the outage",
            )
            await asyncio.to_thread(pg.start)
            up_at = time.monotonic()
            await eventually(
                lambda: any(s == 200 for t, s in readiness if t > up_at),
                timeout=RECOVERY_LIMIT,
                what="readiness green again",
            )

            def clean_run() -> bool:
                # Recovered: the last 50 responses, all sent after the restart, are all successes.
                recent = [o for o in outcomes if o.at > up_at][-50:]
                return len(recent) == 50 and all(o.status in (200, 201) for o in recent)

            await eventually(clean_run, timeout=RECOVERY_LIMIT, what="error rate back to 0")
        finally:
            stop.set()
            await asyncio.gather(*tasks, return_exceptions=True)

        failures = [o for o in outcomes if o.status not in (200, 201)]
        last_failure = max((o.at for o in failures), default=up_at)
        ready_red = [t for t, s in readiness if s == 503]
        ready_green_again = min(t for t, s in readiness if s == 200 and t > up_at)
        counts = await db_counts(db_url)
        report(
            "postgres-restart",
            requests=len(outcomes),
            ok=len(outcomes) - len(failures),
            status_503=sum(o.status == 503 for o in failures),
            other_failures=len([o for o in failures if o.status != 503]),
            outage_seconds=round(up_at - down_at, 2),
            errors_after_restart_seconds=round(max(0.0, last_failure - up_at), 2),
            readiness_red_seconds=round(ready_green_again - min(ready_red), 2),
            committed_writes=counts.produced,
            events_applied=counts.applied,
        )
        assert ready_red, "readiness never went red"
        bad = [
            (o.status, o.problem, o.error, round(o.at - up_at, 2)) for o in failures if o.status != 503 or not o.problem
        ]
        assert bad == [], f"failures other than 503 problem responses: {bad[:10]}"
        assert last_failure - up_at < RECOVERY_LIMIT
        assert ready_green_again > min(ready_red)
        # Every write that committed produced exactly one applied event (the outbox resumed after the outage).
        await eventually(lambda: _all_applied(db_url), timeout=30, what="outbox drained after the outage")
    finally:
        await asyncio.to_thread(pg.stop)


async def _all_applied(db_url: str) -> bool:
    counts = await db_counts(db_url)
    return counts.applied == counts.produced and counts.outbox_pending == 0 and counts.applied_more_than_once == 0
