"""The JetStream settings a service ships with, read back from the server (not from our own code).

What the fault tests rely on: file storage (a NATS restart keeps streams, consumer positions and the
duplicate window), a duplicate window long enough for a crashed relay to come back and republish
inside it, a finite `max_deliver` with a dead-letter stream, explicit acks.
"""

from __future__ import annotations

import nats
import pytest
from chaosmod.module import module as chaos_module
from nats.js import api

from quark_sdk.events import EventBus, dead_letter_stream, stream_for
from quark_sdk.testing import QuarkTestEnv, eventually

pytestmark = [pytest.mark.fleet]


async def test_streams_and_consumers_use_durable_bounded_settings(quark: QuarkTestEnv) -> None:
    svc = await quark.start(chaos_module)
    runner = svc.ctx.consumers[0]
    await eventually(runner.ready.is_set, timeout=15, what="consumer subscribed")
    nc = await nats.connect(quark.servers.nats_url)
    try:
        jsm = nc.jsm()
        stream = (await jsm.stream_info(stream_for("chaos", quark.namespace))).config
        dlq = (await jsm.stream_info(dead_letter_stream(quark.namespace))).config
        consumer = (await jsm.consumer_info(stream_for("chaos", quark.namespace), runner.durable)).config
    finally:
        await nc.close()
    assert stream.storage == api.StorageType.FILE and dlq.storage == api.StorageType.FILE
    assert stream.retention == api.RetentionPolicy.LIMITS
    # A relay that died between publish and mark-sent republishes on its next round after restart;
    # two minutes covers a supervisor restart, and the consumer inbox absorbs anything later still.
    assert stream.duplicate_window is not None and stream.duplicate_window >= EventBus.DUPLICATE_WINDOW >= 120
    assert consumer.ack_policy == api.AckPolicy.EXPLICIT
    assert consumer.max_deliver == svc.settings.consumer_max_deliver and 1 <= consumer.max_deliver <= 100
    assert consumer.ack_wait is not None and consumer.ack_wait < stream.duplicate_window
