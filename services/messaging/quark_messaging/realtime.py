"""Live delivery: the WebSocket connections of this instance, and the NATS subject every instance shares.

A frame for some users is published once on core NATS (`rt.<namespace>.messaging.deliver`) with
the recipient ids in a one-line header; every instance receives it and hands the (already
serialised) frame to the local connections of those users. So a user connected to instance A
gets what was sent on instance B, and a 500-member group costs one publish and one encode.

Core NATS is at-most-once: a frame lost in transit (an instance restarting) is recovered by the
client's `resume` (messages are in the database), never by the live path.

Each connection has a bounded send queue drained by its own writer task; a client that does not
read fills its queue and is dropped with close code 1013, so it can never stall the fan-out to
everybody else.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from quark_sdk import telemetry
from quark_sdk.app import ServiceContext
from quark_sdk.events import EventBusUnavailable
from quark_sdk.tasks import wait_event

log = logging.getLogger("quark.messaging.realtime")

CLOSE_GOING_AWAY = 1001
CLOSE_POLICY = 1008  # missing, invalid or expired token
CLOSE_TOO_BIG = 1009
CLOSE_RESTART = 1012
CLOSE_SLOW = 1013  # "try again later": the client did not keep up with its frames
CLOSE_IDLE = 4000
CLOSE_RATE_LIMITED = 4029


def dumps(frame: dict[str, Any]) -> str:
    return json.dumps(frame, separators=(",", ":"), ensure_ascii=False)


@dataclass(eq=False)
class Connection:
    """One authenticated WebSocket: a bounded queue of serialised frames and the state of its resume."""

    user_id: uuid.UUID
    queue_size: int
    token_exp: float | None = None
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    queue: asyncio.Queue[str] = field(init=False)
    closing: asyncio.Event = field(default_factory=asyncio.Event)
    close_code: int = 1000
    close_reason: str = ""
    # While a resume replays history, live frames wait here; `replayed` drops the ones replayed already.
    resuming: bool = False
    held: list[tuple[str, str | None, int | None]] = field(default_factory=list)
    replayed: set[tuple[str, int]] = field(default_factory=set)
    # Until the first resume, live frames delivered are remembered (bounded), so the replay skips them.
    early: set[tuple[str, int]] | None = field(default_factory=set)
    # After a resume: per conversation, the seq up to which the client has everything (its `after`, or
    # the last replayed). A live frame at or below it is a late copy of a replayed message (published
    # after the replay's snapshot although committed before it) and is dropped. Exact because seqs are
    # allocated in commit order: anything at or below a replayed seq was in the replay's snapshot.
    floor: dict[str, int] = field(default_factory=dict)
    last_frame_at: float = field(default_factory=time.monotonic)

    def __post_init__(self) -> None:
        self.queue = asyncio.Queue(self.queue_size)

    @property
    def closed(self) -> bool:
        return self.closing.is_set()

    def close(self, code: int, reason: str) -> None:
        if not self.closing.is_set():
            self.close_code, self.close_reason = code, reason
            self.closing.set()

    def deliver(self, text: str, conversation: str | None = None, seq: int | None = None) -> None:
        """Hand a live frame to this connection without ever waiting (the fan-out loop calls it)."""
        if self.closed:
            return
        if self.resuming:
            if len(self.held) >= self.queue_size:
                self.close(CLOSE_SLOW, "slow consumer: too many frames during resume")
                return
            self.held.append((text, conversation, seq))
            return
        if conversation is not None and seq is not None and seq <= self.floor.get(conversation, 0):
            return
        early = self.early
        if early is not None and conversation is not None and seq is not None:
            if len(early) < 4 * self.queue_size:
                early.add((conversation, seq))
            else:
                self.early = None  # too much before any resume: this client does not resume
        self.put(text)

    def put(self, text: str) -> None:
        try:
            self.queue.put_nowait(text)
        except asyncio.QueueFull:
            self.close(CLOSE_SLOW, "slow consumer: send queue full")

    def begin_resume(self) -> None:
        self.resuming = True
        self.held.clear()
        self.replayed.clear()

    def end_resume(self) -> None:
        """Release the frames held during the replay, minus those the replay already sent."""
        held, self.held = self.held, []
        self.resuming = False
        for text, conversation, seq in held:
            if (
                conversation is not None
                and seq is not None
                and ((conversation, seq) in self.replayed or seq <= self.floor.get(conversation, 0))
            ):
                continue
            self.put(text)
        self.replayed.clear()
        self.early = None

    def already_sent(self, conversation: str, seq: int) -> bool:
        return self.early is not None and (conversation, seq) in self.early

    async def send_replay(self, text: str, conversation: str, seq: int) -> None:
        """Replay frames may wait for room in the queue (the replay runs on this connection's own task)."""
        self.replayed.add((conversation, seq))
        await self.queue.put(text)


class Hub:
    """This instance's connections by user, and the shared NATS delivery subject."""

    def __init__(self, ctx: ServiceContext, *, presence_ttl: float) -> None:
        self.ctx = ctx
        self.instance = uuid.uuid4().hex[:12]
        ns = ctx.settings.event_namespace or "default"
        self.subject = f"rt.{ns}.messaging.deliver"
        self.presence_ttl = presence_ttl
        self.by_user: dict[uuid.UUID, set[Connection]] = {}
        # quark_websocket_connections: open sockets of this process (0 from the start, so the panel shows 0).
        self._gauge = telemetry.WEBSOCKET_CONNECTIONS.labels(ctx.name)
        self._sub: Subscription | None = None
        self._subscriber: asyncio.Task[None] | None = None
        self.subscribed = asyncio.Event()
        self.on_local: Callable[[int], None] | None = None  # metrics hook for tests/bench

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        self._subscriber = asyncio.create_task(self._subscribe(), name="messaging-hub-subscribe")
        await wait_event(self.subscribed, 5)

    async def _subscribe(self) -> None:
        """Subscribe as soon as NATS is there; nats-py re-subscribes by itself after a reconnect."""
        delay = 0.1
        while self._sub is None:
            bus = self.ctx.bus
            try:
                if bus is None:
                    raise EventBusUnavailable("no event bus")
                self._sub = await bus.nc.subscribe(
                    self.subject, cb=self._on_msg, pending_msgs_limit=1_000_000, pending_bytes_limit=512 * 1024 * 1024
                )
                await bus.nc.flush(timeout=2)
                self.subscribed.set()
            except (EventBusUnavailable, TimeoutError, OSError) as exc:
                self._sub = None
                log.warning("delivery subject not subscribed yet (%s); retrying", type(exc).__name__)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def stop(self) -> None:
        if self._subscriber is not None:
            self._subscriber.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._subscriber
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await self._sub.unsubscribe()
        for conns in list(self.by_user.values()):
            for conn in list(conns):
                conn.close(CLOSE_RESTART, "server restarting")

    # -- connections --------------------------------------------------------------------------

    def register(self, conn: Connection) -> None:
        conns = self.by_user.setdefault(conn.user_id, set())
        if conn not in conns:
            conns.add(conn)
            self._gauge.inc()

    def unregister(self, conn: Connection) -> None:
        conns = self.by_user.get(conn.user_id)
        if conns is not None and conn in conns:
            conns.discard(conn)
            self._gauge.dec()
            if not conns:
                del self.by_user[conn.user_id]

    def connections(self) -> Iterable[Connection]:
        for conns in list(self.by_user.values()):
            yield from list(conns)

    @property
    def connection_count(self) -> int:
        return sum(len(c) for c in self.by_user.values())

    # -- delivery -----------------------------------------------------------------------------

    async def publish(
        self,
        recipients: Iterable[uuid.UUID | str],
        frame: dict[str, Any],
        *,
        conversation: str | None = None,
        seq: int | None = None,
    ) -> None:
        """Send `frame` to every open connection of `recipients`, on whichever instance they are."""
        ids = [str(r) for r in recipients]
        if not ids:
            return
        text = dumps(frame)
        header = dumps({"r": ids, "c": conversation, "s": seq})
        bus = self.ctx.bus
        try:
            if bus is None or not bus.is_connected:
                raise EventBusUnavailable("not connected")
            await bus.nc.publish(self.subject, f"{header}\n{text}".encode())
        except (EventBusUnavailable, OSError) as exc:
            # Degraded: at least this instance's clients get it; the others resume from the database.
            log.warning("live delivery through NATS failed (%s); delivering locally only", type(exc).__name__)
            self.deliver_local(ids, text, conversation, seq)

    async def _on_msg(self, msg: Msg) -> None:
        try:
            raw = msg.data.decode()
            head, _, text = raw.partition("\n")
            header = json.loads(head)
            self.deliver_local(header["r"], text, header.get("c"), header.get("s"))
        except Exception:  # a malformed frame on the subject must not kill the subscription
            log.exception("bad frame on the delivery subject")

    def deliver_local(self, recipients: Iterable[str], text: str, conversation: str | None, seq: int | None) -> int:
        delivered = 0
        by_user = self.by_user
        for rid in recipients:
            try:
                conns = by_user.get(uuid.UUID(rid))
            except ValueError:
                continue
            if not conns:
                continue
            for conn in list(conns):
                conn.deliver(text, conversation, seq)
                delivered += 1
        if self.on_local is not None:
            self.on_local(delivered)
        return delivered

    # -- presence (Redis: one sorted set per user, members = connection ids, scores = expiry) ---

    def _presence_key(self, user_id: uuid.UUID | str) -> str:
        return self.ctx.key("presence", str(user_id))

    async def mark_online(self, conns: Iterable[Connection]) -> None:
        redis = self.ctx.cache()
        expiry = time.time() + self.presence_ttl
        pipe = redis.pipeline(transaction=False)
        for conn in conns:
            key = self._presence_key(conn.user_id)
            pipe.zadd(key, {conn.id: expiry})
            pipe.expire(key, int(self.presence_ttl) + 1)
        await pipe.execute()

    async def mark_offline(self, conn: Connection) -> None:
        await self.ctx.cache().zrem(self._presence_key(conn.user_id), conn.id)

    async def online(self, user_ids: Iterable[uuid.UUID]) -> set[uuid.UUID]:
        """Users with an open connection on any instance. This instance's own connections answer
        for their users without a Valkey round trip (a DM's recipient is usually one of them)."""
        online: set[uuid.UUID] = set()
        ask: list[uuid.UUID] = []
        for uid in user_ids:
            conns = self.by_user.get(uid)
            if conns and any(not c.closed for c in conns):
                online.add(uid)
            else:
                ask.append(uid)
        if not ask:
            return online
        now = time.time()
        pipe = self.ctx.cache().pipeline(transaction=False)
        for uid in ask:
            pipe.zcount(self._presence_key(uid), now, "+inf")
        counts = await pipe.execute()
        online.update(uid for uid, n in zip(ask, counts, strict=True) if n)
        return online
