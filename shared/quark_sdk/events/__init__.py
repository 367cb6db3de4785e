"""Events between modules: CloudEvents envelope, JetStream streams, durable consumers.

Producers never publish directly: they call :func:`quark_sdk.outbox.add_event`
inside their transaction and the outbox relay publishes. Consumers are durable
pull consumers per (service, purpose); each delivery is applied at most once
through the inbox table, failures are retried with backoff, and after
``max_deliver`` deliveries (or at once, for an envelope that does not parse)
the message goes to the dead-letter stream and consumption continues.

The package: ``envelope`` (catalogue, payloads, the CloudEvents envelope, naming), ``bus`` (the NATS
connection, streams, publishing), ``consumer`` (`Consumer` and the runner that subscribes it), ``inbox``
(applying deliveries once, retries, dead letters). Import from ``quark_sdk.events``.
"""

from __future__ import annotations

from quark_sdk.events.bus import EventBus, EventBusUnavailable
from quark_sdk.events.consumer import NONE_MARGIN, Consumer, ConsumerRunner, Handler
from quark_sdk.events.envelope import (
    EVENT_CATALOGUE,
    CloudEvent,
    EventPayload,
    PermanentEventError,
    dead_letter_stream,
    dead_letter_subject,
    domain_of,
    event_type,
    stream_for,
    subject_for,
)
from quark_sdk.events.inbox import processed_event_ids

__all__ = [
    "EVENT_CATALOGUE",
    "NONE_MARGIN",
    "CloudEvent",
    "Consumer",
    "ConsumerRunner",
    "EventBus",
    "EventBusUnavailable",
    "EventPayload",
    "Handler",
    "PermanentEventError",
    "dead_letter_stream",
    "dead_letter_subject",
    "domain_of",
    "event_type",
    "processed_event_ids",
    "stream_for",
    "subject_for",
]
