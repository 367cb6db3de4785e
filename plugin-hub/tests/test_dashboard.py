"""The live dashboard: the page and its assets, and the SSE stream that keeps it current."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from hub_testkit import manifest, register, start_hub

from quark_hub.runtime import HubRuntime
from quark_sdk.testing import QuarkTestEnv, eventually


def parse_sse(text: str) -> list[tuple[str, Any]]:
    events = []
    for block in text.split("\n\n"):
        lines = block.splitlines()
        kind = next((ln[6:].strip() for ln in lines if ln.startswith("event:")), None)
        data = "\n".join(ln[5:].lstrip() for ln in lines if ln.startswith("data:"))
        if kind:
            events.append((kind, json.loads(data)))
    return events


async def test_page_and_assets(quark: QuarkTestEnv, tmp_path: Path) -> None:
    svc = await start_hub(quark, tmp_path)
    page = await svc.client.get("/hub")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert '<script src="/hub/static/dashboard.js"' in page.text and "http" not in page.text.split("<footer")[0]
    js = await svc.client.get("/hub/static/dashboard.js")
    assert js.status_code == 200 and js.headers["content-type"].startswith("text/javascript")
    assert "EventSource" in js.text and "innerHTML" not in js.text  # textContent only: no markup injection
    assert (await svc.client.get("/hub/static/dashboard.css")).status_code == 200
    for bad in ("/hub/static/../app.py", "/hub/static/%2e%2e%2fapp.py", "/hub/static/dashboard.html", "/hub/static/x"):
        assert (await svc.client.get(bad)).status_code == 404, bad


async def test_stream_sends_a_snapshot_then_live_changes(quark: QuarkTestEnv, tmp_path: Path) -> None:
    svc = await start_hub(quark, tmp_path, stream_max_seconds=1.5, stream_refresh=5.0, monitor_interval=60)
    await register(svc, manifest("blog"), "http://127.0.5.4:3004")
    rt: HubRuntime = svc.ctx.runtime
    # The in-process client returns the body when the stream ends (after stream_max_seconds).
    reading = asyncio.create_task(svc.client.get("/api/v1/hub/stream"))
    await eventually(lambda: len(rt.broadcaster.subscribers) == 1, what="stream subscribed")
    await register(svc, manifest("media"), "http://127.0.5.3:3003")
    resp = await reading
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/event-stream")
    assert resp.text.startswith("retry: 1000")
    snapshots = [data for kind, data in parse_sse(resp.text) if kind == "snapshot"]
    assert [m["name"] for m in snapshots[0]["modules"]] == ["blog"]
    # The change arrived as its own snapshot, well before the 5 s refresh.
    assert [m["name"] for m in snapshots[-1]["modules"]] == ["blog", "media"]
    assert snapshots[-1]["events"][0]["type"] == "quark.hub.module.docked"
    assert snapshots[-1]["events"][0]["module"] == "media"
    assert rt.broadcaster.subscribers == set()


async def test_snapshot_shows_the_fleet_supervisor_while_it_runs(quark: QuarkTestEnv, tmp_path: Path) -> None:
    """`quark dev --fleet` keeps fleet.json fresh in the data dir it shares with the hub: the page shows its
    processes (state, restarts, last exit); a stale file (a fleet that stopped) or none shows nothing."""
    import time

    from quark_hub.dashboard import snapshot

    svc = await start_hub(quark, tmp_path)
    rt: HubRuntime = svc.ctx.runtime
    assert (await snapshot(rt))["supervisor"] is None
    children = {"blog": {"state": "backoff", "pid": None, "restarts": 2, "last_exit": -9},
                "traefik": {"state": "running", "pid": 4242, "restarts": 0, "last_exit": None}}
    fleet = rt.settings.data_dir / "fleet.json"
    fleet.parent.mkdir(parents=True, exist_ok=True)
    fleet.write_text(json.dumps({"supervisor": children, "updated_at": time.time()}))
    assert (await snapshot(rt))["supervisor"] == {"children": children}
    fleet.write_text(json.dumps({"supervisor": children, "updated_at": time.time() - 60}))
    assert (await snapshot(rt))["supervisor"] is None
    fleet.write_text("{not json")
    assert (await snapshot(rt))["supervisor"] is None
    page = (await svc.client.get("/hub")).text
    assert 'id="supervisor"' in page
