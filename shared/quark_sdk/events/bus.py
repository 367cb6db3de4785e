"""The NATS connection of a service process: reconnecting, stream creation, publishing to JetStream."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

import nats
import nats.js.errors
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext, api

from quark_sdk.events.envelope import CloudEvent, domain_of, stream_for, subject_for
from quark_sdk.tasks import cancel_and_wait

log = logging.getLogger("quark.events")


class EventBusUnavailable(Exception):
    """NATS is not reachable right now; the caller keeps the work and retries."""


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
        self._refused_warned = False

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
        # nats-py retries a refused connection forever without raising; say so once, or a module whose NATS
        # user is missing or stale would wait for events in silence.
        if "authorization violation" in str(exc).lower() and not self._refused_warned:
            self._refused_warned = True
            who = "its NATS user" if self.restricted else "a connection without credentials"
            log.warning("NATS at %s refused %s for %s (Authorization Violation): the module's user is missing or "
                        "its password differs (quark provision NAME creates it on a dev station); retrying",
                        self.display_url, who, self.service)
            return
        log.debug("nats error: %r", exc)

    async def _on_disconnected(self) -> None:
        if not self._closing:
            log.warning("disconnected from NATS")

    async def _on_reconnected(self) -> None:
        self._refused_warned = False
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
        # nats-py bounds its wait for a free in-flight slot with asyncio.wait_for, which on Python 3.11 starts a
        # task per publish even when a slot is free (a fifth of the relay's CPU in bench/events.py). A free slot
        # is taken without waiting, so the bound only matters when none is: pass it only then.
        slots: asyncio.Semaphore | None = getattr(js, "_publish_async_pending_semaphore", None)
        futures: list[asyncio.Future[api.PubAck] | None] = []
        for event_id, type_name, body, headers in items:
            hdrs = {"Nats-Msg-Id": event_id, "Ce-Type": type_name, **headers}
            stall = None if slots is not None and not slots.locked() else timeout
            try:
                futures.append(await js.publish_async(subject_for(type_name, self.namespace), body, headers=hdrs,
                                                      wait_stall=stall))
            except Exception as exc:
                log.warning("publish of %s failed: %r", event_id, exc)
                futures.append(None)
                break
        # One deadline for the whole batch: wait for every acknowledgement at once (one callback per future,
        # one timer) instead of a wait_for(shield()) per event. An ack that has not come by then counts as not
        # acknowledged and its future is cancelled, as before: its row stays pending and is published again
        # (Nats-Msg-Id lets JetStream drop the copy if the first one did land).
        deadline = time.monotonic() + timeout
        pending = [fut for fut in futures if fut is not None]
        if pending:
            _, late = await asyncio.wait(pending, timeout=max(0.01, deadline - time.monotonic()))
            for fut in late:
                fut.cancel()
        results = [fut is not None and not fut.cancelled() and fut.exception() is None for fut in futures]
        results.extend([False] * (len(items) - len(results)))
        return results
