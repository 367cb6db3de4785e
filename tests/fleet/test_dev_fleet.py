"""`quark dev --fleet` docks every module it starts with the hub by default, with the station's registration token,
and puts real Traefik in front of them on the station's port.

A real `quark dev --fleet --modules hub,user --free-ports` (one process per module, embedded PostgreSQL, Valkey and
NATS) in a temporary data directory; nothing is stubbed. The whole fleet shares QUARK_HUB_REGISTRATION_TOKEN, as
docker-compose.yml and the k8s Secret give it: the hub requires it on registry writes, the SDK sends it.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from quark_sdk.cli import installed_modules
from quark_sdk.embedded import free_port
from quark_sdk.testing import eventually

pytestmark = [pytest.mark.fleet, pytest.mark.slow]

QUARK = Path(sys.executable).with_name("quark")
MODULES = ("hub", "user")
TOKEN = "fleet-test-registration-token-0123456789"


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[dict[str, Any]]:
    installed = {m.name for m in installed_modules()}
    if not set(MODULES) <= installed:
        pytest.skip(f"needs the installed modules {MODULES}")
    data = tmp_path / "data"
    data.mkdir()
    log = tmp_path / "fleet.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("QUARK_")}
    env.update({"QUARK_ENV": "dev", "QUARK_LOG_LEVEL": "WARNING", "QUARK_HEARTBEAT_INTERVAL": "1",
                "QUARK_HUB_MONITOR_INTERVAL": "0.5", "QUARK_HUB_REGISTRATION_TOKEN": TOKEN,
                "QUARK_START_TIMEOUT": "150"})
    cmd = [str(QUARK), "dev", "--fleet", "--free-ports", "--modules", ",".join(MODULES), "--data-dir", str(data),
           "--port", str(free_port())]
    with open(log, "ab") as out:
        proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        yield {"proc": proc, "data": data, "log": log}
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)


async def test_modules_started_by_quark_dev_fleet_dock_with_the_hub(fleet: dict[str, Any]) -> None:
    proc: subprocess.Popen[bytes] = fleet["proc"]
    log: Path = fleet["log"]

    def up() -> bool:
        assert proc.poll() is None, "quark dev --fleet exited:\n" + log.read_text(errors="replace")[-4000:]
        return "Quark fleet is up" in log.read_text(errors="replace")

    await eventually(up, timeout=200, what="quark dev --fleet to start")
    urls: dict[str, str] = json.loads((fleet["data"] / "fleet.json").read_text())["modules"]
    assert set(urls) == set(MODULES)

    async with httpx.AsyncClient(base_url=urls["hub"], timeout=5) as hub:

        async def docked() -> dict[str, list[dict[str, Any]]] | None:
            resp = await hub.get("/api/v1/hub/services")
            assert resp.status_code == 200, resp.text
            found = {m["name"]: m["instances"] for m in resp.json()["items"]}
            return found if set(MODULES) <= set(found) else None

        found = await eventually(docked, timeout=60, what="hub and user in the hub's discovery")
        for name in MODULES:
            assert [i["instance_url"] for i in found[name]] == [urls[name]], found[name]

        async def healthy() -> bool:
            resp = await hub.get("/modules/discovery", params={"name": "user"})
            (user,) = resp.json()["items"]
            return [i["health"] for i in user["instances"]] == ["healthy"]

        await eventually(healthy, timeout=60, what="the user instance probed healthy by the hub")
        # The token is really enforced: a write without it is refused, and the docked modules had it.
        refused = await hub.post("/api/v1/hub/modules/register", json={})
        assert refused.status_code == 401, refused.text
        assert refused.headers["content-type"].startswith("application/problem+json")

    # Traefik in front, on the station's port: both modules are reached through it, with the hub's routes.
    gateway: str = json.loads((fleet["data"] / "fleet.json").read_text())["gateway"]["url"]
    async with httpx.AsyncClient(base_url=gateway, timeout=5) as front:
        me = await front.get("/api/v1/users/me")
        assert me.status_code == 401 and me.headers["content-type"].startswith("application/problem+json")
        assert me.headers.get("x-frame-options") == "DENY"  # the hub's security-headers middleware
        assert (await front.get("/api/v1/hub/services")).status_code == 200
        assert (await front.get("/api/v1/hub/traefik/config")).status_code == 404  # internal only
