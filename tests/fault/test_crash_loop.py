"""A message that crashes its consumer process on every delivery must end in the dead-letter stream.

Found while writing the chaos tests. The SDK dead-letters a message when its handler *raises* on
the last allowed delivery, but a delivery that kills the process (OOM kill, native crash, SIGKILL
mid-batch) never reaches that code: after `max_deliver` such deliveries JetStream stops delivering
and the event is neither applied nor dead-lettered — it is silently lost. JetStream announces it on
`$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.<stream>.<consumer>`: the SDK now keeps those advisories in a
stream per consumer and the restarted consumer dead-letters the messages they name (quark_sdk/events/consumer.py,
`ConsumerRunner._subscribe_advisories`); a redelivered batch is applied one by one so the messages fetched
with the crashing one are not dragged down with it (when max_deliver leaves room for another delivery).
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import httpx
import pytest
from fault_testkit import RestartableNats, db_counts, report, spawn_chaos, stream_counts

from quark_sdk.testing import QuarkTestEnv, eventually

pytestmark = [pytest.mark.fleet, pytest.mark.slow]

MAX_DELIVER = 2


async def test_crash_looping_message_is_dead_lettered_not_lost(quark: QuarkTestEnv, scratch: Path) -> None:
    bus = RestartableNats(scratch / "nats").start()
    try:
        proc = await spawn_chaos(quark, nats_url=bus.url, consumer_max_deliver=MAX_DELIVER)
        db_url = proc.settings.database_url if proc.settings else None
        assert db_url and proc.proc is not None
        async with httpx.AsyncClient(timeout=10) as client:
            resp = await client.post(proc.url + "/api/v1/chaos/produce", json={"keys": ["crash-1", "fine-1"]})
            assert resp.status_code == 201, resp.text
        crashes = 0
        for _ in range(MAX_DELIVER):
            popen = proc.proc
            await eventually(lambda p=popen: p.poll() is not None, timeout=30, what="consumer crashed")
            crashes += 1
            proc.start()  # a supervisor restarts it; the unacknowledged message comes back after ack_wait

        async def settled() -> bool:
            s = await stream_counts(bus.url, quark.namespace)
            c = await db_counts(db_url)
            return s.ack_pending == 0 and s.undelivered == 0 and c.outbox_pending == 0

        await eventually(settled, timeout=30, what="consumer idle after the crash loop")

        async def accounted() -> bool:
            # The restarted consumer dead-letters what JetStream gave up on when it is next idle.
            s = await stream_counts(bus.url, quark.namespace)
            c = await db_counts(db_url)
            return c.applied + s.dead_lettered >= 2

        with contextlib.suppress(AssertionError):  # the assertion below says what is missing
            await eventually(accounted, timeout=15, what="every event applied or dead-lettered")
        stream = await stream_counts(bus.url, quark.namespace)
        counts = await db_counts(db_url)
        report(
            "crash-loop",
            sent=2,
            crashes=crashes,
            lost=2 - counts.applied - stream.dead_lettered,
            max_deliver=MAX_DELIVER,
            deliveries=stream.deliveries,
            applied=counts.applied,
            dead_lettered=stream.dead_lettered,
            alive=proc.proc.poll() is None,
        )
        assert proc.proc.poll() is None  # it stopped crashing: JetStream gave up on the message
        # Both events were in the crashing batch; each must be applied or dead-lettered, none lost.
        lost = 2 - counts.applied - stream.dead_lettered
        assert lost == 0, f"{lost} event(s) neither applied nor dead-lettered"
    finally:
        bus.stop()
