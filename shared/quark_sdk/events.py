"""Events between modules: CloudEvents envelope, JetStream streams, durable consumers.

Producers never publish directly: they call :func:`quark_sdk.outbox.add_event`
inside their transaction and the outbox relay publishes. Consumers are durable
pull consumers per (service, purpose); each delivery is applied at most once
through the inbox table, failures are retried with backoff, and after
``max_deliver`` deliveries (or at once, for an envelope that does not parse)
the message goes to the dead-letter stream and consumption continues.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar, Generic, TypeVar
from urllib.parse import urlsplit

import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.js import JetStreamContext, api
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from quark_sdk import telemetry
from quark_sdk.db import Database
from quark_sdk.errors import is_unavailable_error
from quark_sdk.tasks import cancel_and_wait

log = logging.getLogger("quark.events")

# Any pydantic model: a consumer parses with its own model of another service's payload (tolerant reader).
P = TypeVar("P", bound=BaseModel)

# ----------------------------------------------------------------------------- catalogue

EVENT_CATALOGUE: dict[str, type[EventPayload]] = {}


class EventPayload(BaseModel):
    """Base of every event's `data` model. Unknown fields are ignored so producers can add fields."""

    model_config = ConfigDict(extra="ignore")
    event_type: ClassVar[str] = ""
    description: ClassVar[str] = ""


E = TypeVar("E", bound="EventPayload")


def event_type(name: str) -> Callable[[type[E]], type[E]]:
    """Register a payload model as the schema of event type `name` (the catalogue feeds AsyncAPI)."""
    parts = name.split(".")
    if len(parts) < 3 or parts[0] != "quark" or not all(p and p.replace("_", "").isalnum() for p in parts):
        raise ValueError(f"event type must look like quark.<domain>.<event>: {name!r}")

    def register(cls: type[E]) -> type[E]:
        existing = EVENT_CATALOGUE.get(name)
        if existing is not None and existing.__qualname__ != cls.__qualname__:
            raise ValueError(f"event type {name} already registered by {existing.__module__}.{existing.__qualname__}")
        cls.event_type = name
        cls.description = (cls.__doc__ or "").strip()
        EVENT_CATALOGUE[name] = cls
        return cls

    return register


# ----------------------------------------------------------------------------- envelope


class CloudEvent(BaseModel):
    """CloudEvents 1.0 structured JSON envelope."""

    model_config = ConfigDict(extra="allow")

    specversion: str = Field(default="1.0", pattern=r"^1\.0$")
    id: str = Field(min_length=1, max_length=128)
    source: str = Field(min_length=1, max_length=256)
    type: str = Field(min_length=1, max_length=256, pattern=r"^quark\.[a-z0-9_]+(\.[a-z0-9_]+)+$")
    time: datetime
    subject: str | None = Field(default=None, max_length=512)
    datacontenttype: str = "application/json"
    data: dict[str, Any] = Field(default_factory=dict)
    traceparent: str | None = None

    @classmethod
    def new(cls, payload: EventPayload, *, source: str, subject: str | None = None,
            traceparent: str | None = None) -> CloudEvent:
        if not payload.event_type:
            raise ValueError(f"{type(payload).__name__} is not registered with @event_type")
        return cls(
            id=str(uuid.uuid4()),
            source=source,
            type=payload.event_type,
            time=datetime.now(UTC),
            subject=subject,
            data=payload.model_dump(mode="json"),
            traceparent=traceparent,
        )

    def payload(self, model: builtins.type[P]) -> P:
        """`data` parsed with `model` (the producer's registered payload or the consumer's own reading of it).

        A payload that does not match can never succeed on redelivery: it raises PermanentEventError,
        which sends the event straight to the dead-letter stream."""
        try:
            return model.model_validate(self.data)
        except ValidationError as exc:
            raise PermanentEventError(
                f"{self.type} payload does not match {model.__name__}: {exc.error_count()} error(s), "
                f"first: {exc.errors()[0]['loc']} {exc.errors()[0]['msg']}") from None

    def to_bytes(self) -> bytes:
        return self.model_dump_json(exclude_none=True).encode()

    @classmethod
    def from_bytes(cls, raw: bytes) -> CloudEvent:
        return cls.model_validate_json(raw)


# ----------------------------------------------------------------------------- naming


def domain_of(type_name: str) -> str:
    return type_name.split(".")[1]


def subject_for(type_name: str, namespace: str = "") -> str:
    return f"{namespace}.{type_name}" if namespace else type_name


def stream_for(domain: str, namespace: str = "") -> str:
    base = f"QUARK_{domain.upper()}"
    return f"{namespace.upper()}_{base}" if namespace else base


def dead_letter_stream(namespace: str = "") -> str:
    return stream_for("dlq", namespace)


def dead_letter_subject(service: str, consumer: str, namespace: str = "") -> str:
    return subject_for(f"quark.dlq.{service}.{consumer}", namespace)


class EventBusUnavailable(Exception):
    """NATS is not reachable right now; the caller keeps the work and retries."""


# ----------------------------------------------------------------------------- bus


class EventBus:
    """One NATS connection per service process, reconnecting forever."""

    STREAM_MAX_AGE = 7 * 24 * 3600.0
    DRAIN_TIMEOUT = 2.0
    DUPLICATE_WINDOW = 120.0

    def __init__(self, url: str, *, service: str, namespace: str = "") -> None:
        from quark_sdk.natsauth import redact

        self.url = url
        self.service = service
        self.namespace = namespace
        # Credentials in the URL (nats://<module>:<password>@host) mean a per-module NATS user with permissions
        # from its manifest (quark_sdk.natsauth): then this bus uses its own inbox prefix, creates only the
        # streams it may, and consumes streams carrying private events by single-filter consumers.
        self.restricted = any(urlsplit(u.strip()).username for u in url.split(","))
        self.display_url = redact(url)
        self._nc: NatsClient | None = None
        self._js: JetStreamContext | None = None
        self._streams_ready: set[str] = set()
        self._connected = asyncio.Event()
        self._connect_task: asyncio.Task[None] | None = None
        self._closing = False

    @property
    def is_connected(self) -> bool:
        return self._nc is not None and self._nc.is_connected

    @property
    def js(self) -> JetStreamContext:
        if self._js is None or not self.is_connected:
            raise EventBusUnavailable(f"not connected to NATS at {self.display_url}")
        return self._js

    @property
    def nc(self) -> NatsClient:
        if self._nc is None:
            raise EventBusUnavailable(f"not connected to NATS at {self.display_url}")
        return self._nc

    async def connect(self, *, wait: bool = True, timeout: float = 10) -> None:
        """Connect now, or keep trying in the background if NATS is down (events wait in the outbox)."""
        if self._connect_task is None:
            self._connect_task = asyncio.create_task(self._connect_loop(), name=f"nats-connect-{self.service}")
        if wait:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._connected.wait(), timeout)

    async def _connect_loop(self) -> None:
        from quark_sdk.natsauth import inbox_prefix

        delay = 0.1
        extra: dict[str, Any] = {"inbox_prefix": inbox_prefix(self.service)} if self.restricted else {}
        while True:
            try:
                self._nc = await nats.connect(
                    [u.strip() for u in self.url.split(",")],
                    name=f"quark-{self.service}",
                    **extra,
                    max_reconnect_attempts=-1,
                    reconnect_time_wait=0.25,
                    connect_timeout=2,
                    allow_reconnect=True,
                    ping_interval=5,
                    max_outstanding_pings=3,
                    error_cb=self._on_error,
                    disconnected_cb=self._on_disconnected,
                    reconnected_cb=self._on_reconnected,
                )
                self._js = self._nc.jetstream(timeout=5)
                self._connected.set()
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("NATS at %s unreachable (%s); retrying in %.1fs", self.display_url, exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)

    async def _on_error(self, exc: Exception) -> None:
        log.debug("nats error: %r", exc)

    async def _on_disconnected(self) -> None:
        if not self._closing:
            log.warning("disconnected from NATS")

    async def _on_reconnected(self) -> None:
        log.info("reconnected to NATS")
        # A restarted server without persistent storage would have lost streams: re-check them.
        self._streams_ready.clear()

    async def wait_connected(self) -> None:
        await self._connected.wait()

    async def close(self) -> None:
        self._closing = True
        if self._connect_task is not None:
            await cancel_and_wait(self._connect_task)
            self._connect_task = None
        if self._nc is not None and not self._nc.is_closed:
            # Bounded: publishes are acknowledged one by one already, so a slow drain only delays shutdown.
            with contextlib.suppress(Exception, TimeoutError):
                async with asyncio.timeout(self.DRAIN_TIMEOUT):
                    await self._nc.drain()
            with contextlib.suppress(Exception):
                await self._nc.close()
        self._nc = None
        self._js = None
        self._connected.clear()

    async def ensure_stream(self, domain: str, *, create: bool = True) -> str:
        """Create (or update) the stream of one producing domain; idempotent.

        With `create=False` only check that it exists (nats.js.errors.NotFoundError if not): a module with its
        own NATS user may not create another domain's stream, whose producer creates it on first publish."""
        name = stream_for(domain, self.namespace)
        if name in self._streams_ready:
            return name
        if not create:
            await self.js._jsm.stream_info(name)
            self._streams_ready.add(name)
            return name
        subjects = [subject_for(f"quark.{domain}.>", self.namespace)]
        config = api.StreamConfig(
            name=name,
            subjects=subjects,
            storage=api.StorageType.FILE,
            retention=api.RetentionPolicy.LIMITS,
            max_age=self.STREAM_MAX_AGE,
            duplicate_window=self.DUPLICATE_WINDOW,
            num_replicas=1,
        )
        jsm = self.js._jsm
        try:
            await jsm.add_stream(config)
        except nats.js.errors.BadRequestError as exc:
            if exc.err_code != 10058:  # stream name already in use with a different config
                raise
            await jsm.update_stream(config)
        self._streams_ready.add(name)
        return name

    async def publish(self, event: CloudEvent, *, headers: dict[str, str] | None = None,
                      timeout: float = 5) -> api.PubAck:
        """Publish one envelope with Nats-Msg-Id = event id (JetStream drops duplicates in the window)."""
        await self.ensure_stream(domain_of(event.type))
        hdrs = {"Nats-Msg-Id": event.id, "Ce-Type": event.type, **(headers or {})}
        if event.traceparent:
            hdrs.setdefault("traceparent", event.traceparent)
        return await self.js.publish(subject_for(event.type, self.namespace), event.to_bytes(),
                                     timeout=timeout, headers=hdrs)

    async def publish_many(self, items: Sequence[tuple[str, str, bytes, dict[str, str]]],
                           timeout: float = 10) -> list[bool]:
        """Pipelined publish of (id, type, body, headers) in order; returns which were acknowledged."""
        for domain in {domain_of(t) for _, t, _, _ in items}:
            await self.ensure_stream(domain)
        js = self.js
        futures: list[asyncio.Future[api.PubAck] | None] = []
        for event_id, type_name, body, headers in items:
            hdrs = {"Nats-Msg-Id": event_id, "Ce-Type": type_name, **headers}
            try:
                futures.append(await js.publish_async(subject_for(type_name, self.namespace), body, headers=hdrs,
                                                      wait_stall=timeout))
            except Exception as exc:
                log.warning("publish of %s failed: %r", event_id, exc)
                futures.append(None)
                break
        results: list[bool] = []
        deadline = time.monotonic() + timeout
        for fut in futures:
            if fut is None:
                results.append(False)
                continue
            try:
                await asyncio.wait_for(asyncio.shield(fut), max(0.01, deadline - time.monotonic()))
                results.append(True)
            except Exception:
                if not fut.done():
                    fut.cancel()
                results.append(False)
        results.extend([False] * (len(items) - len(results)))
        return results


# ----------------------------------------------------------------------------- consumers

RuntimeT = TypeVar("RuntimeT")
# A handler gets its module's runtime by parameter (cosmicpython's bootstrap injection), then the
# consumer's transaction and the event: `async def on_followed(rt, session, event)`.
Handler = Callable[[RuntimeT, AsyncSession, "CloudEvent"], Awaitable[None]]


class PermanentEventError(Exception):
    """Raised by a handler for an event that can never succeed: dead-lettered at once."""


class _DatabaseUnavailable(Exception):
    """The consumer's database is unreachable: not the event's fault, so it must not count as a failure."""


@dataclass
class Consumer(Generic[RuntimeT]):
    """A durable consumer: (service, purpose) → handlers keyed by event type.

    Typed by the runtime its handlers receive: `replica = Consumer[BlogRuntime]("replica")`.
    """

    purpose: str
    handlers: dict[str, Handler[RuntimeT]] = field(default_factory=dict)
    max_deliver: int | None = None
    backoff: tuple[float, ...] = (0.05, 0.5, 2.0, 5.0, 15.0)
    batch_size: int = 200
    ack_wait: float = 30.0

    def on(self, *type_names: str) -> Callable[[Handler[RuntimeT]], Handler[RuntimeT]]:
        """Decorator: `@consumer.on("quark.user.followed")`."""

        def register(fn: Handler[RuntimeT]) -> Handler[RuntimeT]:
            for name in type_names:
                if name in self.handlers:
                    raise ValueError(f"{self.purpose}: a handler for {name} is already registered")
                self.handlers[name] = fn
            return fn

        return register

    def domains(self) -> set[str]:
        return {domain_of(t) for t in self.handlers}


class ConsumerRunner:
    """Runs one `Consumer` against every stream its event types live in."""

    def __init__(self, consumer: Consumer[Any], *, bus: EventBus, db: Database, service: str,
                 max_deliver: int = 5, runtime: Any = None) -> None:
        if not consumer.handlers:
            raise ValueError(f"consumer {consumer.purpose} has no handlers")
        self.consumer = consumer
        self.runtime = runtime  # passed to every handler
        self.bus = bus
        self.db = db
        self.service = service
        self.max_deliver = consumer.max_deliver or max_deliver
        self.durable = f"{service}-{consumer.purpose}".replace(".", "_")
        self._tasks: list[asyncio.Task[None]] = []
        self._advisories: dict[str, JetStreamContext.PullSubscription] = {}
        self._subscriptions: dict[str, JetStreamContext.PullSubscription] = {}
        self._stopping = asyncio.Event()
        self.ready = asyncio.Event()
        self.held_rounds = 0  # times a batch waited for the database (observability and tests)

    def slots(self) -> list[tuple[str, str, list[str]]]:
        """(domain, JetStream consumer name, event types) this runner consumes through.

        One consumer per domain (named after the durable), except on a stream that carries private events
        while connected with a per-module NATS user: there one single-filter consumer per event type, since
        permissions can only name a consumer's filter in its create subject (see quark_sdk.natsauth)."""
        from quark_sdk.natsauth import PRIVATE_DOMAINS, may_read, slot_name

        out: list[tuple[str, str, list[str]]] = []
        for domain in sorted(self.consumer.domains()):
            types = sorted(t for t in self.consumer.handlers if domain_of(t) == domain)
            if not (self.bus.restricted and domain in PRIVATE_DOMAINS):
                out.append((domain, self.durable, types))
                continue
            for t in types:
                if may_read(self.service, t):
                    out.append((domain, slot_name(self.durable, t), [t]))
                else:
                    log.error("%s may not read the private event %s; not consuming it", self.service, t)
        return out

    async def start(self) -> None:
        for outcome in telemetry.CONSUMER_OUTCOMES:
            telemetry.EVENTS_CONSUMED.labels(self.service, self.durable, outcome)  # the series exist at 0
        self._tasks = [
            asyncio.create_task(self._run_domain(domain, name, types), name=f"consumer-{name}-{domain}")
            for domain, name, types in self.slots()
        ]

    async def stop(self) -> None:
        self._stopping.set()
        await cancel_and_wait(self._tasks)
        self._tasks = []
        # Leave the pull subscriptions: nats-py's fetch never marks their queue done, so a drain of the
        # connection would otherwise wait its whole timeout for them.
        for sub in [*self._subscriptions.values(), *self._advisories.values()]:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        self._subscriptions.clear()
        self._advisories.clear()

    async def _subscribe(self, domain: str, name: str | None = None,
                         types: Sequence[str] | None = None) -> JetStreamContext.PullSubscription:
        name = name or self.durable
        # A per-module NATS user may not create another domain's stream: its producer does, on first publish.
        stream = await self.bus.ensure_stream(domain, create=not self.bus.restricted)
        await self.bus.ensure_stream("dlq")
        wanted = types if types is not None else [t for t in sorted(self.consumer.handlers) if domain_of(t) == domain]
        subjects = [subject_for(t, self.bus.namespace) for t in wanted]
        config = api.ConsumerConfig(
            durable_name=name,
            name=name,
            ack_policy=api.AckPolicy.EXPLICIT,
            deliver_policy=api.DeliverPolicy.ALL,
            max_deliver=self.max_deliver,
            ack_wait=self.consumer.ack_wait,
            max_ack_pending=max(1000, self.consumer.batch_size * 4),
            filter_subjects=subjects if len(subjects) > 1 else None,
            filter_subject=subjects[0] if len(subjects) == 1 else None,
        )
        jsm = self.bus.js._jsm
        await jsm.add_consumer(stream, config=config)
        key = f"{domain}:{name}"
        self._advisories[key] = await self._subscribe_advisories(stream, name)
        sub = await self.bus.js.pull_subscribe_bind(durable=name, stream=stream)
        self._subscriptions[key] = sub
        return sub

    async def _subscribe_advisories(self, stream: str, consumer: str | None = None
                                    ) -> JetStreamContext.PullSubscription:
        """Capture JetStream's MAX_DELIVERIES advisories for this consumer in a stream of their own.

        A delivery that kills the process (OOM, native crash, SIGKILL mid-batch) never reaches the code that
        dead-letters a failing event; after `max_deliver` such deliveries JetStream gives up on the message
        and only says so in an advisory — a core NATS message, lost if nobody listens at that instant (a
        crash-looping consumer often does not). Kept in a stream, the advisory outlives the crashes and the
        restarted consumer dead-letters the message from it, so no event is ever silently dropped."""
        consumer = consumer or self.durable
        name = f"{stream}_ADV_{consumer}"
        subject = f"$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{stream}.{consumer}"
        jsm = self.bus.js._jsm
        config = api.StreamConfig(name=name, subjects=[subject], storage=api.StorageType.FILE,
                                  retention=api.RetentionPolicy.WORK_QUEUE, max_age=self.bus.STREAM_MAX_AGE,
                                  num_replicas=1)
        try:
            await jsm.add_stream(config)
        except nats.js.errors.BadRequestError as exc:
            if exc.err_code != 10058:
                raise
        await jsm.add_consumer(name, config=api.ConsumerConfig(
            durable_name=consumer, name=consumer, ack_policy=api.AckPolicy.EXPLICIT,
            deliver_policy=api.DeliverPolicy.ALL, ack_wait=30))
        return await self.bus.js.pull_subscribe_bind(durable=consumer, stream=name)

    async def _drain_advisories(self, domain: str, name: str | None = None) -> None:
        """Dead-letter every message JetStream gave up on (see `_subscribe_advisories`)."""
        from quark_sdk.natsauth import PRIVATE_DOMAINS

        sub = self._advisories.get(f"{domain}:{name or self.durable}")
        if sub is None:
            return
        # A per-module NATS user may not read a stream carrying private events by sequence (that would read
        # them all): the dead letter then points at the message, which stays in its stream.
        by_pointer = self.bus.restricted and domain in PRIVATE_DOMAINS
        try:
            advisories = await sub.fetch(16, timeout=0.05)
        except (nats.errors.TimeoutError, TimeoutError):
            return
        jsm = self.bus.js._jsm
        for advisory in advisories:
            info = json.loads(advisory.data)
            stream, seq = info["stream"], int(info["stream_seq"])
            reason = (f"delivered {info.get('deliveries', self.max_deliver)} times without an outcome "
                      "(the consumer crashed or timed out each time)")
            if by_pointer:
                log.error("message %d of stream %s exhausted its deliveries in %s; dead-lettering a pointer to it",
                          seq, stream, self.durable)
                await self._publish_dead_letter(b"", f"{stream}:{seq}", str(seq),
                                                f"{reason}; the message stays in stream {stream} at sequence {seq}")
                telemetry.EVENTS_CONSUMED.labels(self.service, self.durable, "dead_lettered").inc()
                await advisory.ack()
                continue
            try:
                raw = await jsm.get_msg(stream, seq)
            except nats.js.errors.NotFoundError:
                await advisory.ack()  # aged out of the stream meanwhile: nothing left to save
                continue
            event_id = ""
            with contextlib.suppress(Exception):
                event_id = CloudEvent.from_bytes(raw.data or b"").id
            if event_id and event_id in await self._applied([event_id]):
                await advisory.ack()  # applied, only its ack was lost
                continue
            log.error("event %s (stream %s seq %d) exhausted its deliveries in %s; dead-lettering", event_id or "?",
                      stream, seq, self.durable)
            await self._publish_dead_letter(raw.data or b"", raw.subject or "", str(seq), reason)
            telemetry.EVENTS_CONSUMED.labels(self.service, self.durable, "dead_lettered").inc()
            await advisory.ack()

    async def _applied(self, ids: list[str]) -> set[str]:
        from quark_sdk.outbox import inbox_table

        async with self.db.session() as session:
            rows = await session.execute(select(inbox_table.c.event_id).where(
                inbox_table.c.consumer == self.durable, inbox_table.c.event_id.in_(ids)))
            return set(rows.scalars().all())

    async def _run_domain(self, domain: str, name: str | None = None, types: Sequence[str] | None = None) -> None:
        delay = 0.1
        sub: JetStreamContext.PullSubscription | None = None
        while not self._stopping.is_set():
            try:
                if sub is None:
                    await self.bus.wait_connected()
                    sub = await self._subscribe(domain, name, types)
                    self.ready.set()
                    delay = 0.1
                try:
                    msgs = await sub.fetch(self.consumer.batch_size, timeout=1.0)
                except (nats.errors.TimeoutError, TimeoutError):  # nats-py raises either when nothing came
                    await self._drain_advisories(domain, name)  # idle: the moment to look for given-up messages
                    continue
                await self.process_batch(msgs)
            except asyncio.CancelledError:
                raise
            except (EventBusUnavailable, nats.errors.ConnectionClosedError, nats.errors.NoServersError,
                    nats.js.errors.ServiceUnavailableError, nats.js.errors.NotFoundError) as exc:
                # With a per-module NATS user a domain's stream exists once its producer first published:
                # waiting for it is normal (a quiet domain may never have one), not worth a warning each round.
                quiet = self.bus.restricted and isinstance(exc, nats.js.errors.NotFoundError)
                log.log(logging.DEBUG if quiet else logging.WARNING, "consumer %s/%s waiting for %s: %r",
                        self.durable, domain, "its stream" if quiet else "NATS", exc)
                sub = None
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
            except Exception:
                log.exception("consumer %s/%s loop error; retrying", self.durable, domain)
                sub = None
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)

    # -- processing ------------------------------------------------------------------------

    async def process_batch(self, msgs: Iterable[Msg]) -> None:
        """Apply a fetched batch; while the database is unreachable, hold it (no redelivery is spent)."""
        batch = list(msgs)
        delay = 0.1
        while True:
            try:
                await self._process_batch_once(batch)
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
                telemetry.EVENTS_CONSUMED.labels(self.service, self.durable, "retried").inc()
                with contextlib.suppress(Exception):
                    await msg.nak(delay=backoff)

    async def _claim(self, session: AsyncSession, ids: list[str]) -> set[str]:
        """Insert inbox rows; returns the ids not processed before (the ones to apply)."""
        from quark_sdk.outbox import inbox_table

        stmt = (
            pg_insert(inbox_table)
            .values([{"consumer": self.durable, "event_id": i} for i in dict.fromkeys(ids)])
            .on_conflict_do_nothing(index_elements=["consumer", "event_id"])
            .returning(inbox_table.c.event_id)
        )
        return set((await session.execute(stmt)).scalars().all())

    async def _apply(self, session: AsyncSession, msg: Msg, event: CloudEvent) -> None:
        handler = self.consumer.handlers.get(event.type)
        if handler is None:
            return  # a type we do not handle (filter changed): recorded in the inbox, nothing to do
        ctx = telemetry.extract_trace_context(msg.headers)
        started = time.perf_counter()
        with telemetry.tracer("quark.events").start_as_current_span(
            f"consume {event.type}", context=ctx, attributes={"messaging.system": "nats",
                                                               "messaging.consumer.group.name": self.durable,
                                                               "messaging.message.id": event.id}):
            await handler(self.runtime, session, event)
        telemetry.EVENT_HANDLE_DURATION.labels(self.service, self.durable).observe(time.perf_counter() - started)

    async def _ack(self, msg: Msg, event: CloudEvent, outcome: str) -> None:
        telemetry.EVENTS_CONSUMED.labels(self.service, self.durable, outcome).inc()
        lag = (datetime.now(UTC) - event.time).total_seconds()
        telemetry.EVENT_LAG_SECONDS.labels(self.service, self.durable).observe(max(lag, 0.0))
        with contextlib.suppress(Exception):
            md = msg.metadata
            telemetry.CONSUMER_PENDING.labels(self.service, self.durable).set(md.num_pending)
        try:
            await msg.ack()
        except Exception as exc:  # redelivered later and then recognised as a duplicate by the inbox
            log.info("ack of %s failed (%r); the inbox absorbs the redelivery", event.id, exc)

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
        telemetry.EVENTS_CONSUMED.labels(self.service, self.durable, outcome).inc()
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


__all__ = [
    "EVENT_CATALOGUE",
    "CloudEvent",
    "Consumer",
    "ConsumerRunner",
    "EventBus",
    "EventBusUnavailable",
    "EventPayload",
    "PermanentEventError",
    "dead_letter_stream",
    "dead_letter_subject",
    "domain_of",
    "event_type",
    "processed_event_ids",
    "stream_for",
    "subject_for",
]
