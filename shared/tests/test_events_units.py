"""`EventBus.publish_many` and the consumer's tracing without servers: which publishes count as acknowledged."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from opentelemetry import trace as otel_trace

from quark_sdk import telemetry
from quark_sdk.events import CloudEvent, Consumer, ConsumerRunner, EventBus
from sample.module import Noted


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


# ----------------------------------------------------------------------------- the consumer's trace context


class FakeMsg:
    def __init__(self, headers: dict[str, str]) -> None:
        self.headers = headers


def runner_recording_what_add_event_sees(seen: list[dict[str, str]]) -> ConsumerRunner:
    consumer: Consumer[None] = Consumer("traced")

    @consumer.on("quark.sample.noted")
    async def handle(rt: None, session: Any, event: CloudEvent) -> None:
        seen.append(telemetry.inject_trace_context({}))  # what add_event writes into the outbox row

    return ConsumerRunner(consumer, bus=EventBus("nats://127.0.0.1:1", service="t"), db=None,  # type: ignore[arg-type]
                          service="t")


@pytest.mark.parametrize("recorded", [True, False], ids=["spans recorded", "spans not recorded"])
async def test_a_handler_continues_the_trace_of_the_message(recorded: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    telemetry.setup_tracing("quark-events-tests")
    monkeypatch.setattr(telemetry, "spans_recorded", lambda: recorded)
    seen: list[dict[str, str]] = []
    runner = runner_recording_what_add_event_sees(seen)
    trace_id, parent_span = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    event = CloudEvent.new(Noted(text="x"), source="quark/test")
    traced = FakeMsg({"Nats-Msg-Id": event.id, "Traceparent": f"00-{trace_id}-{parent_span}-00"})
    await runner._apply(None, traced, event)  # type: ignore[arg-type]
    await runner._apply(None, FakeMsg({"Nats-Msg-Id": event.id}), event)  # type: ignore[arg-type]
    version, carried_trace, span_id, _ = seen[0]["traceparent"].split("-")
    assert (version, carried_trace) == ("00", trace_id)
    assert span_id not in (parent_span, "0" * 16)  # the consumer's own (unrecorded) span
    # No trace came in: the handler starts one, so its log lines and events still have a trace id.
    assert seen[1]["traceparent"].split("-")[1] not in (trace_id, "0" * 32)
    assert otel_trace.get_current_span() is otel_trace.INVALID_SPAN  # nothing left attached after the handler
