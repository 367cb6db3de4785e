"""A recommendations-like module for the replay test: it counts every quark.post.published it applies.

`seen.times` is incremented on every application, so an event applied twice (a replay overlapping live
delivery, a redelivery after a drain) shows as times = 2."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter
from pydantic_settings import SettingsConfigDict
from sqlalchemy import Column, Integer, String, Table, func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from quark_sdk.app import DbSession, QuarkModule
from quark_sdk.config import ServiceSettings
from quark_sdk.db import service_metadata
from quark_sdk.events import CloudEvent, Consumer

ROOT = Path(__file__).parent


class RecsSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="QUARK_DOCKRECS_", extra="ignore")


metadata = service_metadata()
seen = Table("seen", metadata, Column("event_id", String(64), primary_key=True),
             Column("post_id", String(64), nullable=False), Column("times", Integer, nullable=False))

consumer = Consumer[None]("posts")


@consumer.on("quark.post.published")
async def on_published(rt: None, session: AsyncSession, event: CloudEvent) -> None:
    stmt = insert(seen).values(event_id=event.id, post_id=str(event.data.get("post_id")), times=1)
    await session.execute(stmt.on_conflict_do_update(index_elements=[seen.c.event_id],
                                                     set_={"times": seen.c.times + 1}))


router = APIRouter(prefix="/api/v1/dockrecs")


@router.get("/stats")
async def stats(session: DbSession) -> dict[str, Any]:
    row = (await session.execute(select(func.count(), func.coalesce(func.max(seen.c.times), 0)))).one()
    return {"events": int(row[0]), "max_times": int(row[1])}


module = QuarkModule(name="dockrecs", settings_cls=RecsSettings, root=ROOT, routers=[router], metadata=metadata,
                     consumers=[consumer])
