"""The typed module runtime: built once the connections are up, injected into routes (`RuntimeDep`),
handed to event handlers as their first argument, closed on shutdown — no globals, no string keys."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Annotated

import pytest
from fastapi import APIRouter
from sqlalchemy.ext.asyncio import AsyncSession

from quark_sdk.app import RuntimeDep, ServiceContext, SettingsDep
from quark_sdk.events import CloudEvent, Consumer
from quark_sdk.testing import QuarkTestEnv, eventually
from sample.module import SampleSettings, metadata
from sample.module import module as sample_module
from sample.module import router as sample_router


@dataclass
class CounterRuntime:
    ctx: ServiceContext[SampleSettings, CounterRuntime]
    seen: list[str] = field(default_factory=list)
    closed: bool = False

    async def aclose(self) -> None:
        self.closed = True


BUILT: list[CounterRuntime] = []


async def build_runtime(ctx: ServiceContext[SampleSettings, CounterRuntime]) -> CounterRuntime:
    assert ctx.db is not None and ctx.redis is not None  # connections come first
    rt = CounterRuntime(ctx=ctx)
    BUILT.append(rt)
    return rt


counter = Consumer[CounterRuntime]("counter")


@counter.on("quark.sample.noted")
async def count(rt: CounterRuntime, session: AsyncSession, event: CloudEvent) -> None:
    rt.seen.append(event.id)


Runtime = Annotated[CounterRuntime, RuntimeDep]
Settings = Annotated[SampleSettings, SettingsDep]
router = APIRouter(prefix="/api/v1/counter")


@router.get("/seen")
async def seen(rt: Runtime, settings: Settings) -> dict[str, object]:
    return {"seen": rt.seen, "namespace": settings.event_namespace, "same_settings": rt.ctx.settings is settings}

module = dataclasses.replace(sample_module, runtime=build_runtime, routers=[sample_router, router],
                             consumers=[counter], metadata=metadata)


async def test_each_instance_gets_its_own_runtime_in_routes_and_handlers(quark: QuarkTestEnv) -> None:
    BUILT.clear()
    first = await quark.start(module)
    # Its own event namespace: the second instance's consumer never competes for the first one's events.
    second = await quark.start(module, event_namespace=quark.namespace + "b")
    assert [rt.ctx for rt in BUILT] == [first.ctx, second.ctx]
    assert first.ctx.runtime is BUILT[0] and second.ctx.runtime is BUILT[1]

    event_id = (await first.client.post("/api/v1/sample/notes", params={"text": "hi"})).json()["event_id"]

    async def seen_by_first() -> bool:
        body = (await first.client.get("/api/v1/counter/seen")).json()
        return event_id in body["seen"]

    await eventually(seen_by_first, what="the handler got the first instance's runtime")
    body = (await first.client.get("/api/v1/counter/seen")).json()
    assert body["namespace"] == first.settings.event_namespace and body["same_settings"] is True
    assert BUILT[0].seen == [event_id] and BUILT[1].seen == []


async def test_runtime_is_closed_on_shutdown_and_unavailable_before_start(quark: QuarkTestEnv) -> None:
    BUILT.clear()
    svc = await quark.start(module)
    rt = svc.ctx.runtime
    async with svc.app.router.lifespan_context(svc.app):  # a second lifespan: start and stop again
        assert svc.ctx.runtime is not rt
    assert rt.closed is False  # the first instance is still running
    assert BUILT[1].closed is True
    with pytest.raises(RuntimeError, match="runtime not started"):
        _ = svc.ctx.runtime


async def test_a_module_without_runtime_hands_none_to_its_handlers(quark: QuarkTestEnv) -> None:
    svc = await quark.start(sample_module)
    assert svc.ctx.runtime is None
    assert svc.ctx.runtime_started
