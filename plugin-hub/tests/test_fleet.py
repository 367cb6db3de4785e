"""Fleet mode: the hub and two modules as separate processes, a crash, a restart — as in production."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from hub_testkit import FLEET_MODULES, SHARED_TESTS, EventTap, fast

from quark_hub.app import module as hub_module
from quark_sdk.testing import QuarkTestEnv, eventually

pytestmark = [pytest.mark.fleet, pytest.mark.slow]


async def test_sigkilled_module_goes_unhealthy_leaves_routing_and_redocks(quark: QuarkTestEnv,
                                                                          tmp_path: Path) -> None:
    from echo.module import module as echo_module  # type: ignore[import-not-found]

    from sample.module import module as sample_module

    interval = 0.3
    hub = await quark.spawn(hub_module, "quark_hub.app:module",
                            **fast(tmp_path, monitor_interval=interval, lease_ttl=3.0, self_dock=True))
    sample = await quark.spawn(sample_module, "sample.module:module", pythonpath=[SHARED_TESTS], hub_url=hub.url)
    echo = await quark.spawn(echo_module, "echo.module:module", pythonpath=[FLEET_MODULES], hub_url=hub.url)

    async with httpx.AsyncClient(base_url=hub.url, timeout=5) as client, \
            EventTap(quark.servers.nats_url, quark.namespace) as tap:

        async def health() -> dict[str, list[tuple[str, str]]]:
            page = (await client.get("/modules/discovery")).json()
            return {m["name"]: [(i["instance_url"], i["health"]) for i in m["instances"]] for m in page["items"]}

        async def routed() -> dict[str, list[str]]:
            http = (await client.get("/api/v1/hub/traefik/config")).json()["http"]
            return {n: [s["url"] for s in svc["loadBalancer"]["servers"]] for n, svc in http["services"].items()}

        async def all_docked() -> bool:
            h = await health()
            return h.get("sample") == [(sample.url, "healthy")] and h.get("echo") == [(echo.url, "healthy")] \
                and h.get("hub") == [(hub.url, "healthy")]

        await eventually(all_docked, timeout=30, what="hub, sample and echo docked and healthy")
        assert await routed() == {"hub": [hub.url], "sample": [sample.url], "echo": [echo.url]}
        docked = await eventually(lambda: _events(tap, ".docked", 3))
        sample_id = next(e.data["instance_id"] for e in docked if e.data["module"] == "sample")

        sample.kill()  # SIGKILL: no deregistration, the hub must notice by itself

        async def sample_unhealthy() -> list[Any] | None:
            got = [e for e in await tap.events(".health_changed") if e.data["instance_id"] == sample_id]
            return got if got and got[-1].data["current"] == "unhealthy" else None

        changes = await eventually(sample_unhealthy, timeout=30, what="health transitions of the killed module")
        assert [(e.data["previous"], e.data["current"]) for e in changes] == [("healthy", "degraded"),
                                                                             ("degraded", "unhealthy")]
        # Two failed probes, i.e. at most two monitor intervals after the first probe that missed it.
        assert changes[-1].data["consecutive_failures"] == 2
        assert await routed() == {"hub": [hub.url], "echo": [echo.url]}
        assert (await health())["echo"] == [(echo.url, "healthy")]

        sample.start()  # the same module comes back on the same address: it re-docks

        async def redocked() -> bool:
            return (await health()).get("sample") == [(sample.url, "healthy")] and "sample" in await routed()

        await eventually(redocked, timeout=30, what="restarted module re-docked")
        sample_docks = [e for e in await tap.events(".docked") if e.data["module"] == "sample"]
        assert len(sample_docks) == 2 and sample_docks[1].data["instance_id"] != sample_id
        async def old_instance_gone() -> list[Any] | None:
            got = [e for e in await tap.events(".undocked") if e.data["instance_id"] == sample_id]
            return got or None

        # The event leaves through the hub's outbox: it may arrive just after the new instance shows.
        gone = await eventually(old_instance_gone, timeout=15, what="the killed instance's undocked event")
        # Exactly once: replaced by the new process at its address, or swept if its lease ran out first.
        assert len(gone) == 1 and gone[0].data["reason"] in ("replaced", "lease_expired")
        assert await routed() == {"hub": [hub.url], "sample": [sample.url], "echo": [echo.url]}
        # The gateway route works end to end for the module (what Traefik would forward to).
        assert (await httpx.AsyncClient(base_url=echo.url).get("/api/v1/echo/hi")).json() == {"echo": "hi"}


async def _events(tap: EventTap, suffix: str, n: int) -> list[Any] | None:
    got = await tap.events(suffix)
    return got if len(got) >= n else None
