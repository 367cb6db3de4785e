"""A purpose-built module for the fault tests, run in real processes with `quark serve chaosmod.module:module`.

Modelled on nats-server's chaos tests: every event body carries a unique key; the consumer records
each key it applies in a table with a unique constraint (counting applications per key) and bumps a
side-effect counter, so "every key applied exactly once" is a plain SQL question after the chaos.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter
from pydantic import BaseModel, Field, StringConstraints
from pydantic_settings import SettingsConfigDict
from sqlalchemy import BigInteger, Column, Integer, String, Table, UniqueConstraint, func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from quark_sdk.app import DbSession, QuarkModule, ServiceContext
from quark_sdk.config import ServiceSettings
from quark_sdk.db import service_metadata
from quark_sdk.events import CloudEvent, Consumer, EventBus, EventPayload, event_type
from quark_sdk.outbox import add_event

ROOT = Path(__file__).parent


class ChaosSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="QUARK_CHAOS_", extra="ignore", validate_default=True)

    port: int = Field(default=3998, ge=1, le=65535)
    # Fault injection: SIGKILL this process right after JetStream acknowledged a relay batch and
    # before the relay marks the rows sent (the crash window the outbox must survive).
    crash_after_publish: bool = False


@event_type("quark.chaos.produced")
class Produced(EventPayload):
    """A fault-test event; `key` is unique per event and chosen by the test."""

    key: str


metadata = service_metadata()
produced = Table("produced", metadata, Column("key", String(64), primary_key=True))
applied = Table(
    "applied",
    metadata,
    Column("key", String(64), nullable=False),
    Column("applies", Integer, nullable=False),
    UniqueConstraint("key", name="uq_applied_key"),
)
counters = Table(
    "counters", metadata, Column("name", String(32), primary_key=True), Column("n", BigInteger, nullable=False)
)

# A short ack_wait so messages held by a SIGKILLed process come back quickly.
consumer = Consumer[None]("effects", backoff=(0.05, 0.2, 0.5), batch_size=100, ack_wait=3.0)


@consumer.on("quark.chaos.produced")
async def apply_produced(rt: None, session: AsyncSession, event: CloudEvent) -> None:
    """The side effect: record the key (a second application shows up as applies > 1) and count it."""
    key = event.payload(Produced).key
    if key.startswith("crash-"):
        # A poison pill that takes the whole process down (think OOM kill or a native crash).
        os.kill(os.getpid(), signal.SIGKILL)
    await session.execute(
        pg_insert(applied)
        .values(key=key, applies=1)
        .on_conflict_do_update(constraint="uq_applied_key", set_={"applies": applied.c.applies + 1})
    )
    await session.execute(
        pg_insert(counters)
        .values(name="side_effects", n=1)
        .on_conflict_do_update(index_elements=["name"], set_={"n": counters.c.n + 1})
    )


Key = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_\-]+$")]


class ProduceBody(BaseModel):
    keys: list[Key] = Field(min_length=1, max_length=1000)


async def produce_keys(session: AsyncSession, keys: Sequence[str]) -> int:
    """Idempotent production: a key already produced (a retried request) adds no second event."""
    async with session.begin():
        rows = await session.execute(
            pg_insert(produced)
            .values([{"key": k} for k in dict.fromkeys(keys)])
            .on_conflict_do_nothing()
            .returning(produced.c.key)
        )
        new = list(rows.scalars().all())
        for key in new:
            await add_event(session, Produced(key=key))
    return len(new)


router = APIRouter(prefix="/api/v1/chaos")


@router.post("/produce", status_code=201)
async def produce(body: ProduceBody, session: DbSession) -> dict[str, int]:
    return {"new": await produce_keys(session, body.keys)}


@router.get("/stats")
async def stats(session: DbSession) -> dict[str, int]:
    produced_n = await session.scalar(select(func.count()).select_from(produced))
    applied_n = await session.scalar(select(func.count()).select_from(applied))
    twice = await session.scalar(select(func.count()).select_from(applied).where(applied.c.applies > 1))
    effects = await session.scalar(select(counters.c.n).where(counters.c.name == "side_effects"))
    return {
        "produced": produced_n or 0,
        "applied": applied_n or 0,
        "applied_more_than_once": twice or 0,
        "side_effects": effects or 0,
    }


class _CrashAfterPublish:
    """Wraps the relay's bus: once JetStream acknowledged a batch, the process dies before mark-sent."""

    def __init__(self, bus: EventBus) -> None:
        self._bus = bus

    def __getattr__(self, name: str) -> Any:
        return getattr(self._bus, name)

    async def publish_many(
        self, items: Sequence[tuple[str, str, bytes, dict[str, str]]], timeout: float = 10
    ) -> list[bool]:
        results = await self._bus.publish_many(items, timeout)
        if any(results):
            os.kill(os.getpid(), signal.SIGKILL)
        return results


async def arm_fault_injection(ctx: ServiceContext) -> None:
    if isinstance(ctx.settings, ChaosSettings) and ctx.settings.crash_after_publish and ctx.relay is not None:
        ctx.relay.bus = _CrashAfterPublish(ctx.relay.bus)  # type: ignore[assignment,unused-ignore]


module = QuarkModule(
    name="chaos",
    settings_cls=ChaosSettings,
    root=ROOT,
    routers=[router],
    metadata=metadata,
    consumers=[consumer],
    on_startup=[arm_fault_injection],
)
