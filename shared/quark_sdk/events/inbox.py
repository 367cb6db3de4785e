"""Applying deliveries at most once through the inbox table: batches, retries, dead letters."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from nats.aio.msg import Msg
from opentelemetry import context as otel_context
from opentelemetry import trace
from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from quark_sdk import telemetry
from quark_sdk.db import Database
from quark_sdk.errors import is_unavailable_error
from quark_sdk.events.bus import EventBus
from quark_sdk.events.envelope import CloudEvent, PermanentEventError, dead_letter_subject

if TYPE_CHECKING:
    from quark_sdk.events.consumer import Consumer

log = logging.getLogger("quark.events")


class _DatabaseUnavailable(Exception):
    """The consumer's database is unreachable: not the event's fault, so it must not count as a failure."""


# Looked up once: `trace.get_tracer` builds a new tracer (and its instrumentation scope) on every call. Before a
# provider is installed this is OpenTelemetry's proxy, which follows the provider once there is one.
_TRACER = trace.get_tracer("quark.events")


class _ConsumerMetrics:
    """A consumer's Prometheus series, looked up once (`labels()` hashes and locks on every call)."""

    def __init__(self, service: str, durable: str) -> None:
        self.labels = (service, durable)
        self.outcomes = {outcome: telemetry.EVENTS_CONSUMED.labels(service, durable, outcome)
                         for outcome in telemetry.CONSUMER_OUTCOMES}
        self.handle = telemetry.EVENT_HANDLE_DURATION.labels(service, durable)
        self.lag = telemetry.EVENT_LAG_SECONDS.labels(service, durable)
        self.pending = telemetry.CONSUMER_PENDING.labels(service, durable)

    def count(self, outcome: str) -> None:
        child = self.outcomes.get(outcome)
        if child is None:  # not one of CONSUMER_OUTCOMES: labelled on the fly, as before
            child = self.outcomes[outcome] = telemetry.EVENTS_CONSUMED.labels(*self.labels, outcome)
        child.inc()


class InboxProcessing:
    """How a `ConsumerRunner` applies what it fetched (its processing half, kept apart from subscribing)."""

    consumer: Consumer[Any]
    runtime: Any
    bus: EventBus
    db: Database
    service: str
    durable: str
    max_deliver: int
    held_rounds: int

    @functools.cached_property
    def _metrics(self) -> _ConsumerMetrics:
        return _ConsumerMetrics(self.service, self.durable)

    async def _applied(self, ids: list[str]) -> set[str]:
        from quark_sdk.outbox import inbox_table

        async with self.db.session() as session:
            rows = await session.execute(select(inbox_table.c.event_id).where(
                inbox_table.c.consumer == self.durable, inbox_table.c.event_id.in_(ids)))
            return set(rows.scalars().all())

    async def process_batch(self, msgs: Iterable[Msg]) -> None:
        """Apply a fetched batch; while the database is unreachable, hold it (no redelivery is spent)."""
        batch = list(msgs)
        delay = 0.1
        while True:
            try:
                await self._process_batch_once(batch)
                self._record_pending(batch)
                return
            except _DatabaseUnavailable as exc:
                self.held_rounds += 1
                log.warning("consumer %s: database unavailable (%r); holding %d messages", self.durable,
                            exc.__cause__, len(batch))
                for msg in batch:
                    with contextlib.suppress(Exception):
                        await msg.in_progress()  # keeps ack_wait from expiring while we wait
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)

    async def _process_batch_once(self, msgs: list[Msg]) -> None:
        """One transaction for the whole batch; on any handler failure fall back to one by one."""
        parsed: list[tuple[Msg, CloudEvent]] = []
        for msg in msgs:
            event = await self._parse_or_dead_letter(msg)
            if event is not None:
                parsed.append((msg, event))
        if not parsed:
            return
        # A message delivered twice already may be the one that crashed the process each time: such a batch
        # goes one by one, so the messages before it are applied and acknowledged instead of sharing its fate.
        # (Once redelivered is normal after any restart: those still go as a batch, which is much faster.)
        if len(parsed) > 1 and all(self._num_delivered(m) <= 2 for m, _ in parsed):
            try:
                outcomes: list[str] = []
                async with self.db.transaction() as session:
                    fresh = await self._claim(session, [e.id for _, e in parsed])
                    for msg, event in parsed:
                        if event.id in fresh:
                            await self._apply(session, msg, event)
                            fresh.discard(event.id)  # a repeated id inside one batch applies once
                            outcomes.append("applied")
                        else:
                            outcomes.append("duplicate")
                for (msg, event), outcome in zip(parsed, outcomes, strict=True):
                    await self._ack(msg, event, outcome)
                return
            except Exception as exc:
                if is_unavailable_error(exc):
                    raise _DatabaseUnavailable() from exc
                log.info("batch of %d failed in %s (%r); retrying one by one", len(parsed), self.durable, exc)
        loop = asyncio.get_running_loop()
        touched = loop.time()
        for index, (msg, event) in enumerate(parsed):
            if loop.time() - touched > 1.0:
                # One by one is slower than the batch: keep the rest from passing ack_wait meanwhile (each
                # expiry would spend a delivery of a message that is only waiting its turn).
                for waiting, _ in parsed[index:]:
                    with contextlib.suppress(Exception):
                        await waiting.in_progress()
                touched = loop.time()
            await self._process_one(msg, event)

    async def _process_one(self, msg: Msg, event: CloudEvent) -> None:
        try:
            async with self.db.transaction() as session:
                fresh = await self._claim(session, [event.id])
                outcome = "duplicate"
                if event.id in fresh:
                    await self._apply(session, msg, event)
                    outcome = "applied"
            await self._ack(msg, event, outcome)
        except PermanentEventError as exc:
            await self._dead_letter(msg, f"permanent failure: {exc}")
        except Exception as exc:
            if is_unavailable_error(exc):
                raise _DatabaseUnavailable() from exc
            delivered = self._num_delivered(msg)
            if delivered >= self.max_deliver:
                log.error("event %s (%s) failed %d times in %s; dead-lettering: %r",
                          event.id, event.type, delivered, self.durable, exc)
                await self._dead_letter(msg, f"{type(exc).__name__}: {exc}"[:500])
            else:
                backoff = self.consumer.backoff[min(delivered - 1, len(self.consumer.backoff) - 1)]
                log.warning("event %s (%s) failed in %s (delivery %d/%d), retry in %.2fs: %r",
                            event.id, event.type, self.durable, delivered, self.max_deliver, backoff, exc)
                self._metrics.count("retried")
                with contextlib.suppress(Exception):
                    await msg.nak(delay=backoff)

    async def _claim(self, session: AsyncSession, ids: list[str]) -> set[str]:
        """Insert inbox rows; returns the ids not processed before (the ones to apply)."""
        from quark_sdk.outbox import claim_inbox

        return await claim_inbox(session, self.durable, ids)

    async def _apply(self, session: AsyncSession, msg: Msg, event: CloudEvent) -> None:
        handler = self.consumer.handlers.get(event.type)
        if handler is None:
            return  # a type we do not handle (filter changed): recorded in the inbox, nothing to do
        ctx = telemetry.extract_trace_context(msg.headers)
        started = time.perf_counter()
        if telemetry.spans_recorded():
            with _TRACER.start_as_current_span(
                    f"consume {event.type}", context=ctx, attributes={"messaging.system": "nats",
                                                                       "messaging.consumer.group.name": self.durable,
                                                                       "messaging.message.id": event.id}):
                await handler(self.runtime, session, event)
        else:
            # Nothing is recorded: the same unrecorded span (the message's trace, its own span id; with no
            # provider at all, the message's context itself) made current without the attributes and the
            # context manager's bookkeeping, so the handler's add_event and log lines still carry the trace.
            span = _TRACER.start_span(f"consume {event.type}", context=ctx)
            token = otel_context.attach(trace.set_span_in_context(span))
            try:
                await handler(self.runtime, session, event)
            finally:
                otel_context.detach(token)
        self._metrics.handle.observe(time.perf_counter() - started)

    async def _ack(self, msg: Msg, event: CloudEvent, outcome: str) -> None:
        metrics = self._metrics
        metrics.count(outcome)
        lag = (datetime.now(UTC) - event.time).total_seconds()
        metrics.lag.observe(max(lag, 0.0))
        try:
            await msg.ack()
        except Exception as exc:  # redelivered later and then recognised as a duplicate by the inbox
            log.info("ack of %s failed (%r); the inbox absorbs the redelivery", event.id, exc)

    def _record_pending(self, batch: list[Msg]) -> None:
        """What JetStream still holds for this consumer, as the batch's last message says: once per batch."""
        if batch:
            with contextlib.suppress(Exception):
                self._metrics.pending.set(batch[-1].metadata.num_pending)

    @staticmethod
    def _num_delivered(msg: Msg) -> int:
        try:
            return int(msg.metadata.num_delivered)
        except Exception:
            return 1

    async def _parse_or_dead_letter(self, msg: Msg) -> CloudEvent | None:
        try:
            event = CloudEvent.from_bytes(msg.data)
        except (ValidationError, ValueError, json.JSONDecodeError) as exc:
            await self._dead_letter(msg, f"malformed envelope: {str(exc)[:300]}", outcome="malformed")
            return None
        return event

    async def _dead_letter(self, msg: Msg, reason: str, outcome: str = "dead_lettered") -> None:
        """Copy the message to the dead-letter stream, then terminate it; keep consuming either way."""
        md_seq = ""
        with contextlib.suppress(Exception):
            md_seq = str(msg.metadata.sequence.stream)
        try:
            await self._publish_dead_letter(msg.data, msg.subject, md_seq, reason)
        except Exception as exc:
            # Not terminated: it will be redelivered and dead-lettered when NATS answers again.
            log.error("could not dead-letter message on %s: %r", msg.subject, exc)
            with contextlib.suppress(Exception):
                await msg.nak(delay=1.0)
            return
        self._metrics.count(outcome)
        with contextlib.suppress(Exception):
            await msg.term()

    async def _publish_dead_letter(self, data: bytes, subject: str, stream_seq: str, reason: str) -> None:
        # The same Nats-Msg-Id whichever path dead-letters a message: JetStream keeps one copy.
        headers = {
            "Quark-Original-Subject": subject,
            "Quark-Consumer": self.durable,
            "Quark-Error": reason.replace("\r", " ").replace("\n", " ")[:500],
            "Nats-Msg-Id": f"{self.durable}:{subject}:{stream_seq}",
        }
        await self.bus.ensure_stream("dlq")
        await self.bus.js.publish(dead_letter_subject(self.service, self.consumer.purpose, self.bus.namespace),
                                  data, headers=headers, timeout=5)


async def processed_event_ids(session: AsyncSession, consumer_durable: str) -> set[str]:
    """Event ids a consumer has applied (used by tests and operators)."""
    from quark_sdk.outbox import inbox_table

    rows = await session.execute(select(inbox_table.c.event_id).where(inbox_table.c.consumer == consumer_durable))
    return set(rows.scalars().all())
