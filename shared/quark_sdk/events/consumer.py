"""Durable consumers: the `Consumer` handler table and the runner that subscribes it to its streams."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Generic, TypeVar

import nats
import nats.errors
import nats.js.errors
from nats.js import JetStreamContext, api
from sqlalchemy.ext.asyncio import AsyncSession

from quark_sdk import telemetry
from quark_sdk.db import Database
from quark_sdk.events.bus import EventBus, EventBusUnavailable
from quark_sdk.events.envelope import CloudEvent, domain_of, subject_for
from quark_sdk.events.inbox import InboxProcessing
from quark_sdk.replay import ReplayPolicy
from quark_sdk.tasks import cancel_and_wait

log = logging.getLogger("quark.events")

RuntimeT = TypeVar("RuntimeT")
# A handler gets its module's runtime by parameter (cosmicpython's bootstrap injection), then the
# consumer's transaction and the event: `async def on_followed(rt, session, event)`.
Handler = Callable[[RuntimeT, AsyncSession, "CloudEvent"], Awaitable[None]]


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


# replay: none starts a new consumer at the module's start, less this margin for clock skew between the
# module's host and the NATS server's.
NONE_MARGIN = 1.0


class ConsumerRunner(InboxProcessing):
    """Runs one `Consumer` against every stream its event types live in."""

    def __init__(self, consumer: Consumer[Any], *, bus: EventBus, db: Database, service: str,
                 max_deliver: int = 5, runtime: Any = None, replay: ReplayPolicy | None = None) -> None:
        if not consumer.handlers:
            raise ValueError(f"consumer {consumer.purpose} has no handlers")
        self.consumer = consumer
        self.runtime = runtime  # passed to every handler
        self.bus = bus
        self.db = db
        self.service = service
        self.max_deliver = consumer.max_deliver or max_deliver
        self.durable = f"{service}-{consumer.purpose}".replace(".", "_")
        # Where a consumer that does not exist yet starts (the manifest's `replay`); None: the whole stream.
        self.replay = replay
        self.started_at = datetime.now(UTC)
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
        jsm = self.bus.js._jsm
        deliver, start_time = await self._start_position(stream, name)
        config = api.ConsumerConfig(
            durable_name=name,
            name=name,
            ack_policy=api.AckPolicy.EXPLICIT,
            deliver_policy=deliver,
            opt_start_time=start_time,
            max_deliver=self.max_deliver,
            ack_wait=self.consumer.ack_wait,
            max_ack_pending=max(1000, self.consumer.batch_size * 4),
            filter_subjects=subjects if len(subjects) > 1 else None,
            filter_subject=subjects[0] if len(subjects) == 1 else None,
        )
        await jsm.add_consumer(stream, config=config)
        key = f"{domain}:{name}"
        self._advisories[key] = await self._subscribe_advisories(stream, name)
        sub = await self.bus.js.pull_subscribe_bind(durable=name, stream=stream)
        self._subscriptions[key] = sub
        return sub

    async def _start_position(self, stream: str, name: str) -> tuple[api.DeliverPolicy, datetime | None]:
        """An existing consumer keeps where it started (JetStream cannot change it, and a restart must not
        replay again); a new one starts as the manifest's `replay` says (quark_sdk.replay)."""
        try:
            info = await self.bus.js._jsm.consumer_info(stream, name)
            policy = info.config.deliver_policy or api.DeliverPolicy.ALL
            return api.DeliverPolicy(policy), info.config.opt_start_time  # nats-py reads it back as a str
        except nats.js.errors.NotFoundError:
            pass
        mode = self.replay.mode if self.replay is not None else "all"
        if mode == "since" and self.replay is not None and self.replay.since is not None:
            log.info("consumer %s: first docking, replaying %s since %s", name, stream, self.replay.since)
            return api.DeliverPolicy.BY_START_TIME, self.replay.since
        if mode == "none":  # from this start on, even if the stream appears later (its producer's first event)
            return api.DeliverPolicy.BY_START_TIME, self.started_at - timedelta(seconds=NONE_MARGIN)
        if self.replay is not None:
            log.info("consumer %s: first docking, replaying all of %s", name, stream)
        return api.DeliverPolicy.ALL, None

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

    async def _run_domain(self, domain: str, name: str | None = None, types: Sequence[str] | None = None) -> None:
        telemetry._current_service.set(self.service)  # this task's log records name its module (embedded mode)
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
