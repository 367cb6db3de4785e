"""`quark dev` supervises its embedded servers: each one SIGKILLed under load is back within 10 s, nothing lost.

A real `quark dev` (embedded topology, the chaos module only: `--with chaosmod.module:module`) in a private
data directory. Clients keep writing (one outbox event per request) while the PostgreSQL postmaster, then
Valkey, then nats-server are SIGKILLed, one after the other, with the pids `quark dev` keeps in infra.json.
PostgreSQL is the case that used to stay down: `quark dev` never reaped the killed postmaster (a zombie kept
its PID "alive") and the restart stopped on the stale socket lock file.

Passes when each server is back (a new pid, its port open) and a write succeeds through the station again
within 10 s of its kill; afterwards every write answered 201 has its event applied exactly once; `quark dev`
has no zombie child; each outage left one WARNING line (not one per failed request), no ERROR and no
traceback in the station's output.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from fault_testkit import HERE, report

from quark_sdk.embedded import free_port, port_open
from quark_sdk.testing import eventually, wait_until

pytestmark = [pytest.mark.fleet, pytest.mark.slow, pytest.mark.timeout(400)]

QUARK = Path(sys.executable).with_name("quark")
RECOVERY_LIMIT = 10.0
CLIENTS = 3


def zombies_of(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[0] == "Z" and int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


async def test_each_embedded_server_killed_under_load_recovers_within_10s(scratch: Path) -> None:
    data = scratch / "station"
    port = free_port()
    log = scratch / "station.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("QUARK_")}
    env.update({"QUARK_ENV": "dev", "QUARK_LOG_LEVEL": "WARNING", "QUARK_OUTBOX_POLL_INTERVAL": "0.2",
                "QUARK_REGISTER_WITH_HUB": "false",
                "PYTHONPATH": os.pathsep.join([HERE, env.get("PYTHONPATH", "")]).rstrip(os.pathsep)})
    cmd = [str(QUARK), "dev", "--port", str(port), "--data-dir", str(data), "--modules", "",
           "--with", "chaosmod.module:module"]
    with open(log, "ab") as out:
        proc = subprocess.Popen(cmd, cwd=scratch, env=env, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        def up() -> bool:
            assert proc.poll() is None, log.read_text(errors="replace")[-3000:]
            return "Quark is up" in log.read_text(errors="replace")

        await eventually(up, timeout=180, what="quark dev up")
        infra = lambda: json.loads((data / "infra.json").read_text())  # noqa: E731 - re-read each time
        ports = infra()["ports"]
        statuses: list[tuple[float, int, str]] = []
        stop = asyncio.Event()

        async def writer(n: int) -> None:
            async with httpx.AsyncClient(base_url=base, timeout=10) as http:
                i = 0
                while not stop.is_set():
                    i += 1
                    key = f"e{n}-{i}-{uuid.uuid4().hex[:6]}"
                    try:
                        status = (await http.post("/api/v1/chaos/produce", json={"keys": [key]})).status_code
                    except httpx.HTTPError:
                        status = 0
                    statuses.append((time.monotonic(), status, key))
                    await asyncio.sleep(0.02)  # a steady trickle, not a flood, on a shared 2-core machine

        tasks = [asyncio.create_task(writer(n)) for n in range(CLIENTS)]
        await eventually(lambda: sum(s == 201 for _, s, _ in statuses) >= 10, timeout=30, what="writes flowing")
        figures: dict[str, Any] = {}
        for name in ("postgres", "redis", "nats"):
            old = infra()["pids"][name]
            killed = time.monotonic()
            os.kill(old, signal.SIGKILL)

            def server_back(name: str = name, old: int = old) -> bool:
                pid = infra()["pids"][name]
                return bool(pid) and pid != old and port_open("127.0.0.1", ports[name])

            await eventually(server_back, timeout=30, interval=0.05, what=f"embedded {name} back")
            back = time.monotonic() - killed

            def serving(killed: float = killed) -> bool:
                return any(at > killed and s == 201 for at, s, _ in statuses[-50:]) and \
                    statuses[-1][0] > killed and statuses[-1][1] == 201

            await eventually(serving, timeout=30, interval=0.05, what=f"writes after the {name} kill")
            served = time.monotonic() - killed
            failed = [s for at, s, _ in statuses if at > killed and s != 201]
            figures[name] = {"server_back_s": round(back, 2), "writes_ok_again_s": round(served, 2),
                             "failed_writes": len(failed), "statuses": sorted(set(failed))}
            assert back <= RECOVERY_LIMIT and served <= RECOVERY_LIMIT, figures
        stop.set()
        await asyncio.gather(*tasks)

        created = {k for _, s, k in statuses if s == 201}
        dsn = f"postgresql://postgres@127.0.0.1:{ports['postgres']}/chaos"

        async def all_applied() -> bool:
            conn = await asyncpg.connect(dsn, timeout=10)
            try:
                rows = await conn.fetch("SELECT key, applies FROM applied")
            finally:
                await conn.close()
            applied = {r["key"]: r["applies"] for r in rows}
            assert all(n == 1 for n in applied.values()), "an event applied twice"
            return created <= set(applied)

        await eventually(all_applied, timeout=60, interval=0.5, what="every committed write's event applied")
        assert not zombies_of(proc.pid), zombies_of(proc.pid)
        output = log.read_text(errors="replace")
        report("embedded_servers_sigkill", writes=len(statuses), committed=len(created), **figures)
        assert "Traceback" not in output, output[-4000:]
        assert '"level": "ERROR"' not in output, output[-4000:]
        # Once per outage, not once per failed request: the 503s of the PostgreSQL outage make one line.
        unavailable = output.count("dependency unavailable")
        assert unavailable <= 3, output[-4000:]
        for name in ("postgres", "redis", "nats"):
            assert f"embedded {name}" in output and "exited" in output
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_stale_postmaster_pid_and_socket_lock_are_cleared(tmp_path: Path) -> None:
    """What a SIGKILLed postmaster leaves: postmaster.pid and `.s.PGSQL.<port>.lock` naming a PID that is gone,
    a zombie nobody reaped, or reused by an unrelated process. All three are stale; a live postgres is not."""
    from quark_sdk.embedded import EmbeddedPostgres

    zombie = subprocess.Popen([sys.executable, "-c", "pass"])  # exits; not reaped until the end of the test
    wait_until(lambda: Path(f"/proc/{zombie.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z",
               timeout=10, interval=0.01, what="the child to exit (a zombie)")
    try:
        for stale in (_dead_pid(), zombie.pid, os.getpid()):  # gone, zombie, alive but not postgres
            data = tmp_path / f"pg{stale}"
            data.mkdir()
            (data / "postmaster.pid").write_text(f"{stale}\n{data}\n")
            (data / ".s.PGSQL.5999.lock").write_text(f"{stale}\n{data}\n")
            (data / ".s.PGSQL.5999").touch()
            EmbeddedPostgres(data)._clear_stale_pid()
            assert not [p.name for p in data.iterdir()], stale
    finally:
        zombie.wait()
