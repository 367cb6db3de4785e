"""The live status page at /hub and the Server-Sent Events stream behind it.

The page is static HTML + JS shipped in the package (no build step, nothing fetched at run time).
It opens GET /api/v1/hub/stream, which sends a full `snapshot` event at once, again whenever the
registry changes (any hub instance: changes travel on a Redis channel) and every `stream_refresh`
seconds (heartbeat times move without a change event). A stream ends after `stream_max_seconds`;
the browser's EventSource reconnects by itself, which keeps an open tab from holding up a shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response, StreamingResponse

from quark_hub import service
from quark_hub.api import internal_reader
from quark_hub.runtime import HubRuntime, stop_if_cancelled
from quark_hub.settings import HubSettings
from quark_sdk.app import ServiceContext, get_context
from quark_sdk.errors import NotFound

STATIC = Path(__file__).parent / "static"
ASSETS = {"dashboard.js": "text/javascript; charset=utf-8", "dashboard.css": "text/css; charset=utf-8"}
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; "
       "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
COALESCE = 0.05  # a burst of changes (a fleet docking) becomes one snapshot

router = APIRouter(tags=["hub"])


@router.get("/hub", include_in_schema=False, dependencies=[Depends(internal_reader)])
async def page() -> Response:
    html = (STATIC / "dashboard.html").read_bytes()
    return Response(html, media_type="text/html; charset=utf-8",
                    headers={"Content-Security-Policy": CSP, "Cache-Control": "no-cache",
                             "X-Content-Type-Options": "nosniff", "Referrer-Policy": "same-origin"})


@router.get("/hub/static/{name}", include_in_schema=False)
async def asset(name: str) -> Response:
    if name not in ASSETS:  # a fixed list: no path ever reaches the filesystem from the URL
        raise NotFound("no such dashboard asset")
    return Response((STATIC / name).read_bytes(), media_type=ASSETS[name],
                    headers={"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"})


async def snapshot(rt: HubRuntime) -> dict[str, Any]:
    """Everything the page shows, in one JSON document."""
    page = await service.discover(rt, limit=500)
    events = await rt.store.recent_events(30)
    monitor = rt.monitor
    return {
        "generated_at": time.time(),
        "hub": {"instance_id": rt.self_instance_id, "monitor_leader": bool(getattr(monitor, "leading", False)),
                "monitor_interval": rt.settings.monitor_interval, "lease_ttl": rt.settings.lease_ttl},
        "modules": [m.model_dump(mode="json") for m in page.items],
        "events": events,
        "supervisor": supervisor_state(rt.settings.data_dir),
    }


SUPERVISOR_FRESH = 10.0  # seconds: `quark dev --fleet` rewrites fleet.json at least every 2 s while it runs


def supervisor_state(data_dir: Path) -> dict[str, Any] | None:
    """What the supervisor of `quark dev --fleet` reports about its processes (state, restarts, last exit),
    read from the station's data directory it shares with the hub; None elsewhere (compose and Kubernetes
    restart containers themselves) or when that file is stale."""
    try:
        state = json.loads((data_dir / "fleet.json").read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(state, dict) or time.time() - float(state.get("updated_at", 0)) > SUPERVISOR_FRESH:
        return None
    children = state.get("supervisor")
    return {"children": children} if isinstance(children, dict) else None


async def stream_snapshots(rt: HubRuntime) -> AsyncIterator[str]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + rt.settings.stream_max_seconds
    changed = rt.broadcaster.subscribe()
    try:
        yield "retry: 1000\n\n"
        while True:
            stop_if_cancelled()
            changed.clear()
            data = json.dumps(await snapshot(rt), separators=(",", ":"), default=str)
            yield f"event: snapshot\ndata: {data}\n\n"
            wait = min(rt.settings.stream_refresh, deadline - loop.time())
            if wait <= 0:
                return
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a cancellation.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await changed.wait()
                    await asyncio.sleep(COALESCE)
            if loop.time() >= deadline:
                return
    finally:
        rt.broadcaster.unsubscribe(changed)


@router.get("/api/v1/hub/stream", response_class=StreamingResponse,
            dependencies=[Depends(internal_reader)],
            responses={200: {"content": {"text/event-stream": {}},
                             "description": "`snapshot` events: the dashboard's whole state"}})
async def stream(request: Request) -> StreamingResponse:
    """Server-Sent Events: a `snapshot` now, on every registry change and every few seconds."""
    rt: HubRuntime = get_context(request).runtime
    return StreamingResponse(stream_snapshots(rt), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


async def run_broadcaster(ctx: ServiceContext[HubSettings, HubRuntime]) -> None:
    """Background job: one subscription to the change channel wakes this process's streams."""
    rt = ctx.runtime
    pubsub = rt.store.redis.pubsub()
    await pubsub.subscribe(rt.store.channel)
    try:
        while True:
            stop_if_cancelled()
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
            if message is not None:
                rt.broadcaster.wake_all()
    finally:
        await pubsub.aclose()
