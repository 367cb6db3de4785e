"""What travels: the event catalogue and payload base, the CloudEvents envelope, subject and stream naming."""

from __future__ import annotations

import builtins
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, ClassVar, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

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


class PermanentEventError(Exception):
    """Raised by a handler for an event that can never succeed: dead-lettered at once."""
