"""The health monitor: state machine, events on NATS, metrics, one leader among hubs, the hub docking itself."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hub_testkit import fake_instance, instances, manifest, register, start_hub, tap

from quark_hub.monitor import ProbeResult, assess
from quark_hub.registry_store import InstanceRecord
from quark_hub.settings import HubSettings
from quark_sdk import telemetry
from quark_sdk.testing import QuarkTestEnv, eventually

CHANGED = ".health_changed"


def record(health: str = "healthy", failures: int = 0) -> InstanceRecord:
    return InstanceRecord(instance_id="i1", module="blog", version="1.0.0", instance_url="http://x:1",
                          health_url="http://x:1/health/ready", registered_at=0.0, last_heartbeat=0.0,
                          lease_ttl=15, health=health, failures=failures, health_since=0.0)  # type: ignore[arg-type]


def test_state_machine() -> None:
    s = HubSettings(slow_probe_threshold=0.5, unhealthy_after=2)
    ok, slow, fail = ProbeResult(True, 0.01), ProbeResult(True, 0.9), ProbeResult(False, 0.01, "HTTP 503")
    r, _ = assess(record(), ok, s, 10.0)
    assert (r.health, r.failures, r.health_since, r.last_error) == ("healthy", 0, 0.0, None)
    r, why = assess(record(), slow, s, 10.0)
    assert (r.health, r.failures, r.health_since) == ("degraded", 0, 10.0) and "slow" in why
    r, why = assess(record(), fail, s, 10.0)
    assert (r.health, r.failures) == ("degraded", 1) and "HTTP 503" in why
    r, _ = assess(r, fail, s, 11.0)
    assert (r.health, r.failures, r.health_since) == ("unhealthy", 2, 11.0)
    r, _ = assess(r, fail, s, 12.0)
    assert (r.health, r.failures, r.health_since) == ("unhealthy", 3, 11.0)
    r, _ = assess(r, ok, s, 13.0)
    assert (r.health, r.failures) == ("healthy", 0)
    r, _ = assess(record(), fail, HubSettings(unhealthy_after=1), 1.0)
    assert r.health == "unhealthy"


async def test_failing_instance_goes_degraded_then_unhealthy_then_recovers(quark: QuarkTestEnv,
                                                                           tmp_path: Path) -> None:
    svc = await start_hub(quark, tmp_path, unhealthy_after=2)
    async with fake_instance() as blog, tap(quark) as events:
        iid = (await register(svc, manifest("blog"), blog.url))["instance_id"]
        await eventually(lambda: blog.hits >= 1, what="first probe")
        blog.status = 503

        async def changes(n: int) -> list[Any] | None:
            got = await events.events(CHANGED)
            return got if len(got) >= n else None

        down = await eventually(lambda: changes(2), what="two transitions")
        assert [(e.data["previous"], e.data["current"]) for e in down] == [("healthy", "degraded"),
                                                                           ("degraded", "unhealthy")]
        assert down[1].data["consecutive_failures"] == 2 and "HTTP 503" in down[1].data["reason"]
        assert down[1].data["instance_id"] == iid and down[1].subject == f"blog/{iid}"
        [inst] = await instances(svc.client, "blog")
        assert inst["health"] == "unhealthy" and inst["last_error"] == "HTTP 503"

        blog.status = 200
        up = await eventually(lambda: changes(3), what="recovery")
        assert (up[2].data["previous"], up[2].data["current"]) == ("unhealthy", "healthy")
        [inst] = await instances(svc.client, "blog")
        assert inst["health"] == "healthy" and inst["consecutive_failures"] == 0

        recent = (await svc.client.get("/api/v1/hub/events")).json()["items"]
        assert [e["type"].rsplit(".", 1)[1] for e in recent] == ["health_changed"] * 3 + ["docked"]
        assert recent[0]["summary"].endswith("unhealthy → healthy: probe ok")


async def test_slow_instance_is_degraded(quark: QuarkTestEnv, tmp_path: Path) -> None:
    svc = await start_hub(quark, tmp_path, slow_probe_threshold=0.05, probe_timeout=2.0)
    async with fake_instance() as blog:
        blog.delay = 0.2
        await register(svc, manifest("blog"), blog.url)

        async def degraded() -> Any:
            [inst] = await instances(svc.client, "blog")
            return inst if inst["health"] == "degraded" else None

        inst = await degraded_eventually(degraded)
        assert inst["consecutive_failures"] == 0 and inst["last_error"].startswith("slow probe")
        # Degraded still takes traffic.
        config = (await svc.client.get("/api/v1/hub/traefik/config")).json()
        assert config["http"]["services"]["blog"]["loadBalancer"]["servers"] == [{"url": blog.url}]


async def degraded_eventually(probe: Any) -> Any:
    return await eventually(probe, what="degraded")


async def test_timeout_counts_as_a_failure(quark: QuarkTestEnv, tmp_path: Path) -> None:
    svc = await start_hub(quark, tmp_path, probe_timeout=0.1, slow_probe_threshold=0.05)
    async with fake_instance() as blog:
        blog.delay = 1.0
        await register(svc, manifest("blog"), blog.url)

        async def unhealthy() -> Any:
            [inst] = await instances(svc.client, "blog")
            return inst if inst["health"] == "unhealthy" else None

        inst = await eventually(unhealthy, what="timeouts make it unhealthy")
        assert "no answer within" in inst["last_error"]


async def test_module_health_gauge(quark: QuarkTestEnv, tmp_path: Path) -> None:
    svc = await start_hub(quark, tmp_path)
    async with fake_instance() as blog:
        iid = (await register(svc, manifest("blog"), blog.url))["instance_id"]

        def gauge(state: str) -> float:
            return float(telemetry.MODULE_HEALTH.labels("blog", iid, state)._value.get())

        await eventually(lambda: gauge("healthy") == 1.0, what="healthy gauge")
        assert gauge("unhealthy") == 0.0
        blog.status = 500
        await eventually(lambda: gauge("unhealthy") == 1.0 and gauge("healthy") == 0.0, what="unhealthy gauge")
        metrics = (await svc.client.get("/metrics")).text
        labels = f'docked_instance="{iid}",docked_module="blog",state="unhealthy"'
        assert f"quark_hub_module_health{{{labels}}} 1.0" in metrics
        assert (await svc.client.delete(f"/api/v1/hub/modules/blog/instances/{iid}")).status_code == 204

        def gone() -> bool:
            return f'instance="{iid}"' not in telemetry.metrics_response().body.decode()

        await eventually(gone, what="gauge series removed with the instance")


async def test_only_one_hub_monitors(quark: QuarkTestEnv, tmp_path: Path) -> None:
    first = await start_hub(quark, tmp_path)
    second = await start_hub(quark, tmp_path)  # same namespace: the same registry
    async with fake_instance() as blog, tap(quark) as events:
        await register(first, manifest("blog"), blog.url)
        monitors = [first.ctx.extras["hub_monitor"], second.ctx.extras["hub_monitor"]]
        await eventually(lambda: sum(m.leading for m in monitors) == 1, what="one leader")
        hits = blog.hits
        await eventually(lambda: blog.hits >= hits + 3, what="probing continues")
        assert sum(m.leading for m in monitors) == 1
        blog.status = 500

        async def unhealthy() -> list[Any] | None:
            got = await events.events(CHANGED)
            return got if any(e.data["current"] == "unhealthy" for e in got) else None

        got = await eventually(unhealthy)
        # Each transition once, although two hubs (with two outboxes) are running.
        assert [e.data["current"] for e in got] == ["degraded", "unhealthy"]
        blog.status = 200
        await eventually(lambda: _count(events, 3))
        assert [e.data["current"] for e in await events.events(CHANGED)] == ["degraded", "unhealthy", "healthy"]


async def _count(events: Any, n: int) -> bool:
    return len(await events.events(CHANGED)) >= n


async def test_the_hub_docks_itself_in_process(quark: QuarkTestEnv, tmp_path: Path) -> None:
    svc = await start_hub(quark, tmp_path, self_dock=True, instance_url="http://127.0.0.7:3002")

    async def self_docked() -> Any:
        found = await instances(svc.client, "hub")
        return found[0] if found and found[0]["last_probe_at"] else None

    inst = await eventually(self_docked, what="the hub docked and probed itself")
    assert inst["health"] == "healthy" and inst["instance_url"] == "http://127.0.0.7:3002"
    router = (await svc.client.get("/api/v1/hub/traefik/config")).json()["http"]["routers"]["hub"]
    # Its public reads only (test_gateway_exposure.py checks the rule against every route).
    assert "Path(`/modules/discovery`)" in router["rule"] and "Path(`/hub`)" in router["rule"]
    assert "PathPrefix(`/api/v1/hub`)" not in router["rule"]
    assert svc.ctx.extras["hub"].self_instance_id == inst["instance_id"]
