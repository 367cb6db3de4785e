"""A minimal module built only with the SDK, used by the SDK's own tests."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from pydantic_settings import SettingsConfigDict
from sqlalchemy import Column, Integer, String, Table, func, insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from quark_sdk.app import DbSession, QuarkModule
from quark_sdk.config import ServiceSettings
from quark_sdk.db import service_metadata
from quark_sdk.errors import Conflict
from quark_sdk.events import CloudEvent, Consumer, EventPayload, PermanentEventError, event_type
from quark_sdk.outbox import add_event

ROOT = Path(__file__).parent


class SampleSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="QUARK_SAMPLE_", extra="ignore")


@event_type("quark.sample.noted")
class Noted(EventPayload):
    """A note was written."""

    text: str
    fail_times: int = 0
    poison: bool = False
    permanent: bool = False


metadata = service_metadata()
notes = Table("notes", metadata, Column("id", Integer, primary_key=True), Column("text", String(200), nullable=False))
effects = Table(
    "effects", metadata,
    Column("id", Integer, primary_key=True),
    Column("event_id", String(64), nullable=False, index=True),
    Column("text", String(200), nullable=False),
)

# Deliveries seen per event id, so a handler can fail its first N deliveries.
ATTEMPTS: dict[str, int] = {}

consumer = Consumer[None]("effects", backoff=(0.01, 0.02, 0.05), ack_wait=5)


@consumer.on("quark.sample.noted")
async def apply_note(rt: None, session: AsyncSession, event: CloudEvent) -> None:
    note = event.payload(Noted)
    ATTEMPTS[event.id] = ATTEMPTS.get(event.id, 0) + 1
    if note.permanent:
        raise PermanentEventError("this note can never be applied")
    if note.poison or ATTEMPTS[event.id] <= note.fail_times:
        raise RuntimeError(f"handler failure #{ATTEMPTS[event.id]}")
    await session.execute(insert(effects).values(event_id=event.id, text=note.text))


async def write_note(session: AsyncSession, text: str, *, fail_after_event: bool = False, **flags: bool | int) -> str:
    """The service function: state change and event in one transaction."""
    async with session.begin():
        await session.execute(insert(notes).values(text=text))
        event = await add_event(session, Noted(text=text, **flags))  # type: ignore[arg-type]
        if fail_after_event:
            raise Conflict("refused after the event was written")
    return event.id


router = APIRouter(prefix="/api/v1/sample")


@router.post("/notes", status_code=201)
async def post_note(session: DbSession, text: str, fail: bool = False, fail_times: int = 0,
                    poison: bool = False, permanent: bool = False) -> dict[str, str]:
    event_id = await write_note(session, text, fail_after_event=fail, fail_times=fail_times, poison=poison,
                                permanent=permanent)
    return {"event_id": event_id}


@router.get("/effects")
async def list_effects(session: DbSession) -> dict[str, int]:
    rows = await session.execute(select(effects.c.event_id, func.count()).group_by(effects.c.event_id))
    return {event_id: n for event_id, n in rows.all()}


module = QuarkModule(
    name="sample",
    settings_cls=SampleSettings,
    root=ROOT,
    routers=[router],
    metadata=metadata,
    consumers=[consumer],
)
