"""The outbox relay SIGKILLed between "JetStream acknowledged" and "rows marked sent".

The chaos module's `crash_after_publish` setting wraps its relay's bus so the process SIGKILLs itself
the moment a publish batch is acknowledged — the exact window in which the relay has published but
not recorded it. On restart the relay publishes the same events again with the same Nats-Msg-Id:
JetStream must report them as duplicates (also after a NATS restart: file storage keeps the window),
and the consumer must apply each event exactly once.
"""

from __future__ import annotations

import contextlib
import json
import signal
import uuid
from pathlib import Path

import httpx
import pytest
from fault_testkit import (
    DbCounts,
    RestartableNats,
    StreamCounts,
    db_counts,
    outbox_rows,
    report,
    republish,
    spawn_chaos,
    stream_counts,
)

from quark_sdk.testing import QuarkTestEnv, eventually

pytestmark = [pytest.mark.fleet, pytest.mark.slow]

EVENTS = 50


async def test_relay_killed_between_publish_and_mark_sent(quark: QuarkTestEnv, scratch: Path) -> None:
    bus = RestartableNats(scratch / "nats").start()
    try:
        proc = await spawn_chaos(quark, nats_url=bus.url, crash_after_publish=True)
        db_url = proc.settings.database_url if proc.settings else None
        assert db_url and proc.proc is not None
        keys = [f"r{i:03d}-{uuid.uuid4().hex[:8]}" for i in range(EVENTS)]
        async with httpx.AsyncClient(timeout=10) as client:
            # The process may die before the response is written; the database says what committed.
            with contextlib.suppress(httpx.HTTPError):
                await client.post(proc.url + "/api/v1/chaos/produce", json={"keys": keys})
        popen = proc.proc
        await eventually(lambda: popen.poll() is not None, timeout=30, what="relay process killed after publish")
        assert popen.returncode == -signal.SIGKILL

        # The crash window: JetStream holds the events, the outbox still has them pending.
        rows = await outbox_rows(db_url)
        assert len(rows) == EVENTS and not any(sent for _, _, sent in rows)
        published = await stream_counts(bus.url, quark.namespace)
        assert published.stream_messages == EVENTS

        # Restart without the fault: the relay republishes every row; dedupe keeps one copy each.
        proc.env["QUARK_CHAOS_CRASH_AFTER_PUBLISH"] = "false"
        proc.start()

        async def settled() -> bool:
            counts = await db_counts(db_url)
            return counts.applied == EVENTS and counts.outbox_pending == 0

        await eventually(settled, timeout=30, what="events applied and outbox drained after restart")
        after_restart = await stream_counts(bus.url, quark.namespace)
        assert after_restart.stream_messages == EVENTS  # the relay's second publication was a duplicate

        # Republishing a Nats-Msg-Id inside the duplicate window is acknowledged as a duplicate …
        event_id, body, _ = rows[0]
        duplicates = [await republish(bus.url, quark.namespace, event_id, body.encode())]
        # … also after NATS restarts, clean and hard: the file store rebuilds the window.
        bus.restart()
        duplicates.append(await republish(bus.url, quark.namespace, rows[1][0], rows[1][1].encode()))
        bus.restart(hard=True)
        duplicates.append(await republish(bus.url, quark.namespace, rows[2][0], rows[2][1].encode()))
        # A fresh id is not a duplicate (the check above is not vacuous).
        envelope = json.loads(body)
        envelope["id"], envelope["data"]["key"] = str(uuid.uuid4()), "fresh-" + uuid.uuid4().hex[:8]
        fresh = await republish(bus.url, quark.namespace, envelope["id"], json.dumps(envelope).encode())

        async def quiet() -> StreamCounts | None:
            counts = await stream_counts(bus.url, quark.namespace)
            return counts if counts.ack_pending == 0 and counts.deliveries >= EVENTS + 1 else None

        stream = await eventually(quiet, timeout=30, what="the consumer caught up after the NATS restarts")
        counts = await eventually(lambda: _applied(db_url, EVENTS + 1), timeout=30, what="fresh event applied")
        report(
            "relay-crash",
            sent=EVENTS + 1,
            lost=EVENTS + 1 - counts.applied,
            stored_in_stream_after_restart=after_restart.stream_messages,
            deliveries=stream.deliveries,
            applied=counts.applied,
            duplicated_effects=counts.applied_more_than_once,
            side_effects=counts.side_effects,
            republished_duplicate_flags=duplicates,
            fresh_duplicate_flag=fresh,
            nats_restarts=bus.restarts,
        )
        assert duplicates == [True, True, True]
        assert fresh is False
        assert stream.stream_messages == EVENTS + 1
        assert stream.deliveries >= EVENTS + 1  # at least one delivery each
        assert counts.applied_more_than_once == 0 and counts.side_effects == EVENTS + 1  # exactly one effect each
        assert stream.dead_lettered == 0
    finally:
        bus.stop()


async def _applied(db_url: str, n: int) -> DbCounts | None:
    counts = await db_counts(db_url)
    return counts if counts.applied >= n else None
