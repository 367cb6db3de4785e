"""Helpers for the hub's tests: settings for fast runs, manifests, a controllable instance, event taps."""

from __future__ import annotations

import asyncio
import contextlib
import copy
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import nats
import nats.js.errors
from fastapi import FastAPI

from quark_hub.app import module as hub_module
from quark_sdk.app import create_service_app
from quark_sdk.events import CloudEvent, stream_for
from quark_sdk.testing import QuarkTestEnv, RunningModule, read_stream

REPO = Path(__file__).resolve().parents[2]
SHARED_TESTS = str(REPO / "shared" / "tests")
FLEET_MODULES = str(Path(__file__).parent / "fleet_modules")


def fast(tmp_path: Path, **overrides: Any) -> dict[str, Any]:
    """Hub settings for tests: short intervals, a private secret directory, no self-docking unless asked."""
    values: dict[str, Any] = {
        "data_dir": tmp_path / "hubdata",
        "monitor_interval": 0.2,
        "probe_timeout": 1.0,
        "slow_probe_threshold": 0.5,
        "lease_ttl": 15.0,
        "self_dock": False,
        "stream_refresh": 0.5,
        "stream_max_seconds": 2.0,
    }
    values.update(overrides)
    return values


async def start_hub(quark: QuarkTestEnv, tmp_path: Path, **overrides: Any) -> RunningModule:
    return await quark.start(hub_module, **fast(tmp_path, **overrides))


def manifest(name: str = "blog", *, api: list[str] | None = None, events: list[str] | None = None,
             consumes: list[str] | None = None, scopes: list[str] | None = None, version: str = "1.0.0",
             requires: dict[str, bool] | None = None, port: int = 3004) -> dict[str, Any]:
    return {
        "name": name, "version": version, "type": "service", "description": f"the {name} module",
        "requires": requires if requires is not None else {"database": True, "event_bus": True, "cache": False,
                                                          "storage": False},
        "exposes": {"api": api if api is not None else [f"/api/v1/{name}"],
                    "events": events if events is not None else [f"quark.{name.replace('-', '_')}.created"]},
        "consumes": consumes or [], "scopes": scopes or [], "health_check": "/health/ready", "port": port,
    }


def registration(mf: dict[str, Any], instance_url: str, **extra: Any) -> dict[str, Any]:
    return {"manifest": copy.deepcopy(mf), "instance_url": instance_url, **extra}


async def register(svc: RunningModule, mf: dict[str, Any], instance_url: str, **extra: Any) -> dict[str, Any]:
    resp = await svc.client.post("/api/v1/hub/modules/register", json=registration(mf, instance_url, **extra))
    assert resp.status_code == 201, resp.text
    body: dict[str, Any] = resp.json()
    return body


MONITOR_FIELDS = ("uptime_seconds", "last_probe_at", "latency_ms", "health", "health_since",
                  "consecutive_failures", "last_error")


async def registry_state(client: httpx.AsyncClient) -> list[dict[str, Any]]:
    """What registrations wrote: discovery minus what the clock and the health monitor change."""
    resp = await client.get("/api/v1/hub/services")
    assert resp.status_code == 200, resp.text
    items = resp.json()["items"]
    for m in items:
        m.pop("health")
        for i in m["instances"]:
            for key in MONITOR_FIELDS:
                i.pop(key, None)
    return items


async def instances(client: httpx.AsyncClient, name: str) -> list[dict[str, Any]]:
    resp = await client.get("/api/v1/hub/services", params={"name": name})
    items = resp.json()["items"]
    return items[0]["instances"] if items else []


class FakeInstance:
    """A health endpoint we control: status code, delay, and 'crash' (stop listening)."""

    def __init__(self) -> None:
        self.status = 200
        self.delay = 0.0
        self.hits = 0
        self._server: asyncio.Server | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> FakeInstance:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)
            self._server = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            self.hits += 1
            if self.delay:
                await asyncio.sleep(self.delay)  # simulating a slow server, not waiting for one
            body = b'{"status":"ok"}'
            head = (f"HTTP/1.1 {self.status} X\r\nContent-Type: application/json\r\n"
                    f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n")
            writer.write(head.encode() + body)
            await writer.drain()
        except Exception:
            pass
        finally:
            writer.close()


@contextlib.asynccontextmanager
async def fake_instance() -> AsyncIterator[FakeInstance]:
    inst = await FakeInstance().start()
    try:
        yield inst
    finally:
        await inst.stop()


class EventTap:
    """Reads the hub's events from its JetStream stream in the test's namespace."""

    def __init__(self, nats_url: str, namespace: str) -> None:
        self.nats_url = nats_url
        self.stream = stream_for("hub", namespace)
        self._nc: Any = None

    async def __aenter__(self) -> EventTap:
        self._nc = await nats.connect(self.nats_url, connect_timeout=5)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._nc.close()

    async def events(self, type_suffix: str = "") -> list[CloudEvent]:
        out = []
        for msg in await read_stream(self._nc.jetstream(), self.stream):
            ev = CloudEvent.from_bytes(msg.data or b"")
            if ev.type.endswith(type_suffix):
                out.append(ev)
        return out


def tap(quark: QuarkTestEnv) -> EventTap:
    return EventTap(quark.servers.nats_url, quark.namespace)


@contextlib.asynccontextmanager
async def hub_app(quark: QuarkTestEnv, settings: Any) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    """A hub app whose lifetime the test controls (to stop it and start another on the same state)."""
    app = create_service_app(hub_module, settings, migrate_on_start=False)
    app.state.token_verifier = quark.verifier(settings.token_audience)
    app.state.quark.verifier = app.state.token_verifier
    async with app.router.lifespan_context(app), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
        yield app, client
