"""What the hub publishes: quark.hub.module.* through the outbox, mirrored into the dashboard's recent list.

An event is staged in the caller's transaction (so it exists only if the registry change happened)
and announced after commit: appended to the capped recent-events list and signalled on the change
channel, which wakes every live dashboard of every hub instance.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from quark_hub.lifecycle_schemas import lifecycle_summary
from quark_hub.runtime import HubRuntime
from quark_hub.schemas import ModuleDocked, ModuleHealthChanged, ModuleUndocked
from quark_sdk.events import CloudEvent, EventPayload
from quark_sdk.outbox import add_event

log = logging.getLogger("quark.hub.events")

HubPayload = ModuleDocked | ModuleUndocked | ModuleHealthChanged


async def stage(session: AsyncSession, payload: HubPayload) -> CloudEvent:
    return await add_event(session, payload, subject=f"{payload.module}/{payload.instance_id}")


def summary(payload: EventPayload | dict[str, Any], type_name: str) -> str:
    """One line a person reads on the dashboard."""
    data = payload if isinstance(payload, dict) else payload.model_dump()
    line = lifecycle_summary(data, type_name)
    if line is not None:
        return line
    who = f"{data.get('module')} · {str(data.get('instance_id', ''))[:8]}"
    if type_name.endswith(".docked"):
        return f"{who} docked at {data.get('instance_url')} (v{data.get('version')})"
    if type_name.endswith(".undocked"):
        return f"{who} undocked ({str(data.get('reason', '')).replace('_', ' ')})"
    return f"{who} {data.get('previous')} → {data.get('current')}: {data.get('reason')}"


async def announce(rt: HubRuntime, events: Sequence[CloudEvent]) -> None:
    """After commit: remember the events for the dashboard and wake the live streams."""
    if not events:
        return
    items = [{
        "id": ev.id, "type": ev.type, "time": ev.time.isoformat(),
        "module": ev.data.get("module", ""), "instance_id": ev.data.get("instance_id", ""),
        "summary": summary(ev.data, ev.type), "data": ev.data,
    } for ev in events]
    try:
        await rt.store.push_events(items, keep=rt.settings.recent_events)  # LPUSH: last = newest
        await rt.store.notify("events")
    except Exception as exc:  # the events themselves are safe in the outbox
        log.warning("could not record hub events for the dashboard: %r", exc)
