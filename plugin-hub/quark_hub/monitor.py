"""The health monitor: probes every instance, moves it between states, sweeps lapsed leases.

States: healthy → degraded (one failed probe, or a probe slower than `slow_probe_threshold`) →
unhealthy (`unhealthy_after` consecutive failures) → removed when its lease expires (the SDK client
stops renewing when the process is gone). A successful probe makes an instance healthy again.

Only one hub instance probes at a time: the leader holds a Redis lock with a TTL that it renews every
round, so two hubs never publish the same transition twice; if the leader dies another one takes
over once the lock lapses. Every hub refreshes the MODULE_HEALTH gauge from Redis each round.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from dataclasses import dataclass, replace

import httpx

from quark_hub import events
from quark_hub.registry_store import InstanceRecord, Snapshot
from quark_hub.runtime import HubRuntime, stop_if_cancelled
from quark_hub.schemas import HEALTH_STATES, Health, ModuleHealthChanged, ModuleUndocked
from quark_hub.settings import HubSettings
from quark_sdk import telemetry
from quark_sdk.app import ServiceContext
from quark_sdk.events import CloudEvent

log = logging.getLogger("quark.hub.monitor")

LOCK = "monitor"
MAX_PENDING = 1000


@dataclass(frozen=True)
class ProbeResult:
    ok: bool
    latency: float  # seconds
    error: str | None = None


def assess(record: InstanceRecord, result: ProbeResult, settings: HubSettings,
           now: float) -> tuple[InstanceRecord, str]:
    """The instance after one probe, and the reason for its state (pure: the state machine lives here)."""
    latency_ms = round(result.latency * 1000, 1)
    state: Health
    if result.ok and result.latency <= settings.slow_probe_threshold:
        state, failures, reason, error = "healthy", 0, "probe ok", None
    elif result.ok:
        state, failures = "degraded", 0
        reason = error = f"slow probe: {latency_ms:.0f} ms (threshold {settings.slow_probe_threshold * 1000:.0f} ms)"
    else:
        failures = record.failures + 1
        state = "unhealthy" if failures >= settings.unhealthy_after else "degraded"
        error = result.error or "probe failed"
        reason = f"{failures} failed probe{'s' if failures > 1 else ''} in a row: {error}"
    since = record.health_since if state == record.health else now
    return replace(record, health=state, failures=failures, last_probe_at=now, latency_ms=latency_ms,
                   last_error=error, health_since=since), reason


class Monitor:
    def __init__(self, rt: HubRuntime) -> None:
        self.rt = rt
        self.settings = rt.settings
        self.token = uuid.uuid4().hex
        self.leading = False
        self._pending: list[ModuleHealthChanged | ModuleUndocked] = []
        self._gauged: set[tuple[str, str]] = set()
        self._http = httpx.AsyncClient(
            timeout=self.settings.probe_timeout, follow_redirects=False,
            limits=httpx.Limits(max_connections=self.settings.probe_concurrency, max_keepalive_connections=0),
            headers={"User-Agent": "quark-hub-monitor"},
        )
        self._gate = asyncio.Semaphore(self.settings.probe_concurrency)

    @property
    def lock_ttl(self) -> float:
        # Longer than one round can take, so a live leader never loses the lock between renewals.
        return 2 * self.settings.monitor_interval + 2 * self.settings.probe_timeout + 1

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            stop_if_cancelled()
            started = loop.time()
            try:
                await self.round()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("health monitor round failed: %r", exc)
            await asyncio.sleep(max(0.0, self.settings.monitor_interval - (loop.time() - started)))

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.rt.store.release_lock(LOCK, self.token)
        await self._http.aclose()

    async def round(self) -> None:
        was_leading = self.leading
        self.leading = await self.rt.store.hold_lock(LOCK, self.token, self.lock_ttl)
        if self.leading != was_leading:
            log.info("health monitor %s", "leading" if self.leading else "standing by")
        snap = await self.rt.store.snapshot()
        if self.leading:
            await self.sweep_and_probe(snap)
            snap = await self.rt.store.snapshot()
        self.update_gauges(snap)

    async def sweep_and_probe(self, snap: Snapshot) -> None:
        payloads: list[ModuleHealthChanged | ModuleUndocked] = []
        for name, instance_id in snap.expired:
            url = await self.rt.store.forget_expired(name, instance_id)
            if url is not None:
                payloads.append(ModuleUndocked(module=name, instance_id=instance_id, instance_url=url,
                                               reason="lease_expired"))
        records = list(snap.instances())
        results = await asyncio.gather(*(self.probe(r) for r in records))
        now = time.time()
        for record, result in zip(records, results, strict=True):
            updated, reason = assess(record, result, self.settings, now)
            if not await self.rt.store.update_health(updated, expected=record.health):
                continue  # lease ran out meanwhile, or another hub recorded this round first
            if updated.health != record.health:
                payloads.append(ModuleHealthChanged(
                    module=record.module, instance_id=record.instance_id, instance_url=record.instance_url,
                    previous=record.health, current=updated.health, reason=reason,
                    consecutive_failures=updated.failures, latency_ms=updated.latency_ms))
        await self.publish(payloads)

    async def publish(self, payloads: list[ModuleHealthChanged | ModuleUndocked]) -> None:
        """Stage the round's events (and any left over from a round whose database write failed)."""
        batch = [*self._pending, *payloads]
        if not batch:
            return
        try:
            staged: list[CloudEvent] = []
            async with self.rt.db.transaction() as session:
                for payload in batch:
                    staged.append(await events.stage(session, payload))
        except Exception as exc:
            # The registry already reflects the change (routing must not wait for the database);
            # the events are kept and written next round.
            # Once per outage at WARNING (the first failure with nothing pending yet), then DEBUG per round.
            log.log(logging.DEBUG if self._pending else logging.WARNING,
                    "could not record %d hub events (%r); retrying next round", len(batch), exc)
            self._pending = batch[-MAX_PENDING:]
            return
        self._pending = []
        await events.announce(self.rt, staged)

    async def probe(self, record: InstanceRecord) -> ProbeResult:
        async with self._gate:
            started = time.perf_counter()
            try:
                if record.instance_id == self.rt.self_instance_id:
                    async with asyncio.timeout(self.settings.probe_timeout):
                        checks = await self.rt.ctx.readiness()
                    bad = [k for k, v in checks.items() if v != "ok"]
                    return ProbeResult(not bad, time.perf_counter() - started,
                                       f"not ready: {', '.join(bad)}" if bad else None)
                resp = await self._http.get(record.health_url)
                elapsed = time.perf_counter() - started
                if 200 <= resp.status_code < 300:
                    return ProbeResult(True, elapsed)
                return ProbeResult(False, elapsed, f"HTTP {resp.status_code}")
            except (httpx.TimeoutException, TimeoutError):
                return ProbeResult(False, time.perf_counter() - started,
                                   f"no answer within {self.settings.probe_timeout:g}s")
            except httpx.HTTPError as exc:
                return ProbeResult(False, time.perf_counter() - started, _describe(exc))

    def update_gauges(self, snap: Snapshot) -> None:
        seen: set[tuple[str, str]] = set()
        for record in snap.instances():
            labels = (record.module, record.instance_id)
            seen.add(labels)
            for state in HEALTH_STATES:
                telemetry.MODULE_HEALTH.labels(record.module, record.instance_id, state).set(
                    1 if state == record.health else 0)
        for module, instance in self._gauged - seen:
            for state in HEALTH_STATES:
                with contextlib.suppress(KeyError):
                    telemetry.MODULE_HEALTH.remove(module, instance, state)
        self._gauged = seen


def _describe(exc: httpx.HTTPError) -> str:
    if isinstance(exc, httpx.ConnectError):
        return "connection refused or unreachable"
    if isinstance(exc, httpx.ReadError | httpx.WriteError | httpx.RemoteProtocolError):
        return "connection dropped before an answer"
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text[:120]}" if text else type(exc).__name__


async def run_monitor(ctx: ServiceContext[HubSettings, HubRuntime]) -> None:
    """Background job of the hub module (supervised by the SDK: restarted if it crashes)."""
    monitor = ctx.runtime.monitor = Monitor(ctx.runtime)
    try:
        await monitor.run()
    finally:
        await monitor.close()
