"""`EventBus.publish_many` and the consumer's tracing without servers: which publishes count as acknowledged."""

from __future__ import annotations

import asyncio
from typing import Any

from quark_sdk.events import EventBus


class FakeJetStream:
    """`publish_async` hands out futures the test settles: ack, error, never, or a refused publish."""

    def __init__(self, plan: list[str]) -> None:
        self.plan = plan
        self.futures: list[asyncio.Future[Any]] = []
        self.published: list[str] = []
        self.stalls: list[float | None] = []

    async def publish_async(self, subject: str, payload: bytes, *, headers: dict[str, str],
                            wait_stall: float | None = None) -> asyncio.Future[Any]:
        what = self.plan[len(self.published)]
        self.stalls.append(wait_stall)
        self.published.append(headers["Nats-Msg-Id"])
        if what == "refused":
            raise RuntimeError("too many stalled publishes")
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        loop = asyncio.get_running_loop()
        if what == "ack":
            loop.call_later(0.01, fut.set_result, object())
        elif what == "error":
            loop.call_later(0.01, fut.set_exception, RuntimeError("stream said no"))
        self.futures.append(fut)
        return fut


class FakeConnection:
    is_connected = True


def bus_with(js: FakeJetStream) -> EventBus:
    bus = EventBus("nats://127.0.0.1:1", service="test")
    bus._nc = FakeConnection()  # type: ignore[assignment]
    bus._js = js  # type: ignore[assignment]
    bus._streams_ready.add("QUARK_SAMPLE")
    return bus


def items(n: int) -> list[tuple[str, str, bytes, dict[str, str]]]:
    return [(f"id-{i}", "quark.sample.noted", b"{}", {"traceparent": "x"}) for i in range(n)]


async def test_only_acknowledged_publishes_count_and_late_ones_are_cancelled() -> None:
    js = FakeJetStream(["ack", "never", "error", "ack"])
    results = await bus_with(js).publish_many(items(4), timeout=0.2)
    assert results == [True, False, False, True]
    assert js.published == ["id-0", "id-1", "id-2", "id-3"]
    assert js.futures[1].cancelled()  # its semaphore slot in nats-py is given back


async def test_a_refused_publish_stops_the_batch_and_the_rest_count_as_not_sent() -> None:
    js = FakeJetStream(["ack", "refused", "ack"])
    results = await bus_with(js).publish_many(items(3), timeout=1)
    assert results == [True, False, False]
    assert js.published == ["id-0", "id-1"]  # nothing published after the refusal: order is kept


async def test_the_deadline_is_one_for_the_whole_batch() -> None:
    js = FakeJetStream(["never"] * 50)
    loop = asyncio.get_running_loop()
    started = loop.time()
    results = await bus_with(js).publish_many(items(50), timeout=0.1)
    assert results == [False] * 50
    assert loop.time() - started < 1.0
    assert all(f.cancelled() for f in js.futures)


async def test_the_stall_bound_is_passed_only_when_no_in_flight_slot_is_free() -> None:
    js = FakeJetStream(["ack", "ack"])
    js._publish_async_pending_semaphore = asyncio.Semaphore(1)  # type: ignore[attr-defined]
    assert await bus_with(js).publish_many(items(1), timeout=3) == [True]
    await js._publish_async_pending_semaphore.acquire()  # type: ignore[attr-defined]  # the last slot taken
    assert await bus_with(js).publish_many(items(1), timeout=3) == [True]
    assert js.stalls == [None, 3]
