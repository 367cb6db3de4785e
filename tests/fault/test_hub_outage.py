"""The hub stopped and an instance SIGKILLed, with every process real (`quark serve`).

While the hub is down, modules keep serving (HTTP and events: docking is not on the request path)
and re-dock by themselves when it returns, even after their leases lapsed. An instance that dies
without deregistering leaves discovery and the Traefik configuration within three heartbeat
intervals: its lease (3 heartbeats) runs out in Redis, and the health monitor drops it from routing
after two failed probes, usually much sooner.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from fault_testkit import db_counts, report, spawn_chaos

from quark_hub.app import module as hub_module
from quark_sdk.testing import QuarkTestEnv, eventually

pytestmark = [pytest.mark.fleet, pytest.mark.slow]

HEARTBEAT = 1.0  # the hub hands out lease_ttl / 3 as the heartbeat interval
OBSERVATION_SLACK = 0.5


def hub_settings(scratch: Path) -> dict[str, Any]:
    return {
        "data_dir": scratch / "hubdata",
        "lease_ttl": 3 * HEARTBEAT,
        "monitor_interval": 0.2,
        "probe_timeout": 1.0,
        "unhealthy_after": 2,
        "self_dock": False,
        "stream_refresh": 0.5,
        "stream_max_seconds": 2.0,
    }


async def test_hub_outage_and_sigkilled_instance(quark: QuarkTestEnv, scratch: Path) -> None:
    hub = await quark.spawn(hub_module, "quark_hub.app:module", **hub_settings(scratch))
    a = await spawn_chaos(quark, hub_url=hub.url, heartbeat_interval=HEARTBEAT)
    db_url = a.settings.database_url if a.settings else None
    assert db_url
    b = await spawn_chaos(quark, hub_url=hub.url, heartbeat_interval=HEARTBEAT, database_url=db_url)

    async with httpx.AsyncClient(base_url=hub.url, timeout=5) as client, httpx.AsyncClient(timeout=5) as svc:

        async def discovered() -> set[str]:
            page = (await client.get("/modules/discovery", params={"name": "chaos"})).json()
            return {i["instance_url"] for m in page["items"] for i in m["instances"] if i["health"] == "healthy"}

        async def routed() -> set[str]:
            http = (await client.get("/api/v1/hub/traefik/config")).json().get("http", {})
            return {
                s["url"] for s in http.get("services", {}).get("chaos", {}).get("loadBalancer", {}).get("servers", [])
            }

        async def docked(urls: set[str]) -> bool:
            try:
                return await discovered() == urls and await routed() == urls
            except httpx.HTTPError:
                return False

        await eventually(lambda: docked({a.url, b.url}), timeout=30, what="both instances docked and routed")

        # -- the hub goes away: both instances keep serving, for longer than their leases last
        began_stop = time.monotonic()
        hub.stop()  # SIGTERM: a clean stop (it deregisters nothing of others')
        stopped = time.monotonic()
        served = 0
        keys: list[str] = []
        while time.monotonic() - stopped < 3 * HEARTBEAT + 1.0:  # outlive the leases while serving
            for inst in (a, b):
                key = f"h{uuid.uuid4().hex[:12]}"
                resp = await svc.post(inst.url + "/api/v1/chaos/produce", json={"keys": [key]})
                assert resp.status_code == 201, resp.text
                assert (await svc.get(inst.url + "/health/ready")).status_code == 200
                keys.append(key)
                served += 1

        async def applied_all() -> bool:
            counts = await db_counts(db_url)
            return counts.applied == len(keys)

        await eventually(applied_all, timeout=30, what="events flowing while the hub is down")

        # -- the hub returns (same port, same data): both re-dock on their own
        hub.start()
        returned = time.monotonic()
        await eventually(lambda: docked({a.url, b.url}), timeout=30, what="instances re-docked after the outage")
        redocked_after = time.monotonic() - returned

        # -- one instance SIGKILLed: no deregistration; it must leave discovery and routing
        b.kill()
        killed = time.monotonic()

        async def gone_from_routing() -> bool:
            return b.url not in await routed()

        await eventually(gone_from_routing, timeout=3 * HEARTBEAT, interval=0.05, what="killed instance unrouted")
        unrouted_after = time.monotonic() - killed

        async def gone_from_discovery() -> bool:
            page = (await client.get("/modules/discovery", params={"name": "chaos"})).json()
            return not any(i["instance_url"] == b.url for m in page["items"] for i in m["instances"])

        # The lease runs out at most 3 heartbeats after the kill (counted from when the hub processed the
        # last heartbeat); the slack covers that and one discovery round trip on a loaded machine.
        await eventually(
            gone_from_discovery,
            timeout=3 * HEARTBEAT + OBSERVATION_SLACK,
            interval=0.05,
            what="killed instance out of discovery",
        )
        undiscovered_after = time.monotonic() - killed
        assert await discovered() == {a.url} and await routed() == {a.url}
        report(
            "hub-outage",
            heartbeat_interval=HEARTBEAT,
            hub_stop_seconds=round(stopped - began_stop, 2),
            requests_served_while_hub_down=served,
            hub_down_seconds=round(returned - stopped, 2),
            redocked_seconds=round(redocked_after, 2),
            killed_unrouted_seconds=round(unrouted_after, 2),
            killed_out_of_discovery_seconds=round(undiscovered_after, 2),
        )
