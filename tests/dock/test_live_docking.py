"""Docking as a live operation on a running station, embedded (`quark dev`) and fleet (`quark dev --fleet`,
real Traefik): install → routed; disable → drained, 404; enable → routed again; upgrade under constant load
with 0 failed requests; remove → gone. And a module simply started beside the station (`quark serve`) gets
its database created and migrated and is reachable on the station's port within a heartbeat."""

from __future__ import annotations

import asyncio
import contextlib
import re
import subprocess
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from dockkit import QUARK, Load, Station, env

from quark_sdk.embedded import free_port
from quark_sdk.testing import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.fleet]
NOTES = "/api/v1/docknotes"


@pytest.fixture(scope="module", params=["embedded", "fleet"])
def station(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Station]:
    s = Station(request.param, tmp_path_factory.mktemp(f"dock-{request.param}")).start()
    try:
        yield s
    finally:
        s.stop()


def status(station: Station, path: str) -> int:
    try:
        return httpx.get(station.base + path, timeout=5).status_code
    except httpx.HTTPError:
        return 0


def lifecycle(station: Station) -> dict:
    from quark_sdk.lifecycle_cli import Hub

    return Hub(station.data_dir).lifecycle("docknotes")


async def ws_echo(station: Station, text: str) -> str:
    from websockets.asyncio.client import connect

    async with connect(station.base.replace("http", "ws", 1) + NOTES + "/ws", open_timeout=10) as ws:
        await ws.send(text)
        return str(await asyncio.wait_for(ws.recv(), 10))


def test_install_disable_enable_upgrade_remove(station: Station) -> None:
    out = station.quark("install", "docknotes.app:module_v1").stdout
    took = float(re.search(r"routed ([0-9.]+)s after", out).group(1))  # type: ignore[union-attr]
    print(f"[{station.mode}] quark install → first routed request: {took:.2f}s")
    resp = httpx.get(station.base + NOTES, timeout=5)
    assert resp.status_code == 200 and resp.json()["version"] == "1.0.0"
    assert asyncio.run(ws_echo(station, "hi")) == "1.0.0:hi"  # WebSocket through the station's gateway
    assert httpx.post(station.base + NOTES + "/echo", json={"a": 1}, timeout=5).json()["echo"] == {"a": 1}

    station.quark("modules", "disable", "docknotes")
    assert status(station, NOTES) == 404  # routes went first; the drained instance deregistered
    view = lifecycle(station)
    assert view["state"] == "disabled" and view["instances"] == []

    station.quark("modules", "enable", "docknotes")
    wait_until(lambda: status(station, NOTES) == 200, timeout=30, what="routed again")
    assert lifecycle(station)["state"] == "enabled"

    with Load(station.base + NOTES) as load:
        wait_until(lambda: len(load.results) > 20, timeout=30, what="load running")
        station.quark("upgrade", "docknotes", "docknotes.app:module_v2", "--pause", "1.5")
        seen = len(load.results)
        wait_until(lambda: len(load.results) > seen + 20, timeout=30, what="load after the upgrade")
    versions = [v for _, v in load.results]
    print(f"[{station.mode}] upgrade under load: {len(load.results)} requests, {len(load.failures)} failed")
    assert load.failures == []
    assert "1.0.0" in versions and "2.0.0" in versions
    assert set(versions[-20:]) == {"2.0.0"}
    view = lifecycle(station)
    assert view["retired"] == ["1.0.0"] and {i["version"] for i in view["instances"]} == {"2.0.0"}

    station.quark("remove", "docknotes")
    wait_until(lambda: status(station, NOTES) == 404, timeout=30, what="removed from the gateway")
    assert lifecycle(station)["state"] == "removed"


def test_serve_beside_the_station_creates_its_database_and_is_routed(station: Station, tmp_path: Path) -> None:
    port = free_port()
    e = env() | {"QUARK_DATA_DIR": str(station.data_dir)}
    log = tmp_path / "dockrecs.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([str(QUARK), "serve", "dockrecs.app:module", "--port", str(port)], env=e,
                                cwd=station.data_dir, stdout=out, stderr=subprocess.STDOUT)
    try:
        def routed() -> bool:
            assert proc.poll() is None, log.read_text()
            return status(station, "/api/v1/dockrecs/stats") == 200

        wait_until(routed, timeout=90, what="dockrecs routed on the station's port")
        assert httpx.get(station.base + "/api/v1/dockrecs/stats", timeout=5).json() == {"events": 0, "max_times": 0}
        text = log.read_text()
        assert "Traceback" not in text and "created database dockrecs" in text
    finally:
        proc.terminate()
        proc.wait(30)


def test_remove_with_purge_drops_the_database_and_the_consumers(station: Station) -> None:
    _as_operator(station, _post_stream)  # the blog would create it on its first publish; this station has none
    station.quark("install", "dockrecs.app:module")
    assert status(station, "/api/v1/dockrecs/stats") == 200
    wait_until(lambda: _bus_leftovers(station, "dockrecs") != [], timeout=30, what="dockrecs' consumer on the bus")
    assert _has_database(station, "dockrecs")
    out = station.quark("remove", "dockrecs", "--purge-data").stdout
    assert "dropped" in out and "JetStream consumers" in out, out
    assert _bus_leftovers(station, "dockrecs") == []
    assert not _has_database(station, "dockrecs")
    # Installed again after a purge: a fresh database, routed; the station's stop (the fixture) ends it too.
    station.quark("install", "dockrecs.app:module")
    assert httpx.get(station.base + "/api/v1/dockrecs/stats", timeout=5).json() == {"events": 0, "max_times": 0}


def _infra(station: Station) -> dict:
    import json

    return json.loads((station.data_dir / "infra.json").read_text())


def _as_operator(station: Station, work: Callable[[Any], Awaitable[Any]]) -> Any:
    """Run `work(jetstream)` as the station's NATS operator."""
    import nats

    from quark_sdk import natsauth
    from quark_sdk.secrets import EnvFileSecrets

    url = f"nats://127.0.0.1:{_infra(station)['ports']['nats']}"
    passwords = EnvFileSecrets(station.data_dir / "secrets", {}).get(natsauth.SECRETS_PATH) or {}
    if natsauth.OPERATOR_USER in passwords:
        url = natsauth.with_credentials(url, natsauth.OPERATOR_USER, passwords[natsauth.OPERATOR_USER])

    async def run() -> Any:
        nc = await nats.connect(url, connect_timeout=5, max_reconnect_attempts=0)
        try:
            return await work(nc.jetstream())
        finally:
            await nc.close()

    return asyncio.run(run())


async def _post_stream(js: Any) -> None:
    """The streams dockrecs binds to: its producer's (the blog's, absent here) and the dead letters'."""
    from nats.js.errors import BadRequestError

    from quark_sdk.events import stream_for

    for domain in ("post", "dlq"):
        with contextlib.suppress(BadRequestError):  # exists already (the hub may have made the dead letters')
            await js.add_stream(name=stream_for(domain), subjects=[f"quark.{domain}.>"])


def _bus_leftovers(station: Station, module: str) -> list[str]:
    """The module's consumers and advisory streams, as the station's NATS operator sees them."""

    async def look(js: Any) -> list[str]:
        found = []
        for info in await js.streams_info():
            name = info.config.name
            if f"_ADV_{module}-" in name:
                found.append(name)
                continue
            found += [f"{name}/{c.name}" for c in await js.consumers_info(name) if c.name.startswith(f"{module}-")]
        return found

    return list(_as_operator(station, look))


def _has_database(station: Station, name: str) -> bool:
    import asyncpg

    async def look() -> bool:
        conn = await asyncpg.connect(f"postgresql://postgres@127.0.0.1:{_infra(station)['ports']['postgres']}/postgres")
        try:
            return await conn.fetchval("SELECT count(*) FROM pg_database WHERE datname = $1", name) == 1
        finally:
            await conn.close()

    return asyncio.run(look())
