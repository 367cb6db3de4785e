"""Station load test: the DeathStarBench social-network mix, open loop, against a whole station.

Mix (per request, drawn at random): 60% home timeline, 30% user timeline, 10% compose post; plus, when the
messaging module is installed, 5% direct messages on top. Requests are sent at a constant arrival rate and
every latency is measured from the request's *intended* send time, so a slow server cannot hide its queue
(no coordinated omission). The rate steps up until p99 crosses 50 ms (or errors appear); the same steps are
run against a bare uvicorn "hello world" in the same run, and the report prints both and their ratio.

The station is started the way users start it — `quark dev` (embedded, one process) and `quark dev --fleet`
(one process per module, real Traefik in front on the station's port; every request goes through it, as in
production, unless `--fleet-direct` sends each one straight to its module by the manifests' prefixes, to
see what the gateway costs) — in a temporary data directory, seeded through the public API (register, log
in, follow, publish).

    .venv/bin/python bench/load.py                  # both modes, steps of 6 s
    .venv/bin/python bench/load.py --quick          # embedded only, smaller seed, short steps
    .venv/bin/python bench/load.py --mode fleet
    .venv/bin/python bench/load.py --mode fleet --fleet-direct   # the fleet without Traefik
    .venv/bin/python bench/load.py --mode embedded --profile 100   # one 20 s step at 100/s under py-spy
    .venv/bin/python bench/load.py --mode embedded --cost          # CPU per operation, each alone
    .venv/bin/python bench/load.py --mode embedded --profile 20 --profile-only compose   # one operation profiled

`--cost` skips the sweep too: after seeding, each operation alone is sent `--cost-requests` times at a
paced 50/s, the station is left to finish what the requests caused (outboxes published, consumers caught
up), and the CPU that every station process used (the Python process with its consumers, the AI workers,
PostgreSQL with its backends, Valkey, NATS, Traefik in the fleet; psutil user + system) is printed per
request. On a shared machine CPU per operation moves far less with the neighbours than latency does, so
this is the figure to compare code changes with.

`--profile RATE` skips the sweep: after seeding, one step runs at RATE while `py-spy record` samples every
station process (`pip install py-spy`; written to --profile-dir as collapsed stacks) and PostgreSQL counts
statements (pg_stat_statements, loaded into the embedded server for that run); the report prints where
the CPU went per process and the statements by total time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import uvloop

VENV_BIN = Path(sys.executable).parent
PASSWORD = "correct horse battery staple"
P99_TARGET_MS = 50.0
STATION_ENV = {
    "QUARK_ENV": "dev", "QUARK_LOG_LEVEL": "WARNING", "QUARK_AUTH_BCRYPT_ROUNDS": "4",
    "QUARK_AUTH_REGISTER_IP_LIMIT": "100000", "QUARK_AUTH_LOGIN_IP_LIMIT": "100000",
    # Rate limits are per user and tested elsewhere; the load test measures throughput, not the limiter.
    "QUARK_BLOG_WRITE_RATE_LIMIT": "1000000", "QUARK_MESSAGING_MESSAGE_RATE_LIMIT": "1000000",
    # Seeded accounts have no mailbox to verify; the policy check (one claim lookup) still runs on every write.
    "QUARK_REQUIRE_VERIFIED_TO_WRITE": "false",
    # The fleet's Traefik limits each client address (100/s, burst 200); every request of this generator comes
    # from 127.0.0.1, as thousands of people's would not. The middleware still runs on every request.
    "QUARK_HUB_TRAEFIK_RATE_AVERAGE": "1000000", "QUARK_HUB_TRAEFIK_RATE_BURST": "1000000",
}


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ----------------------------------------------------------------------------- the station


class Station:
    def __init__(self, mode: str, root: Path, direct: bool = False, only: str | None = None) -> None:
        self.only = only  # `quark dev --modules`: a subset of the installed modules (None: all)
        self.mode, self.root = mode, root / mode
        self.direct = direct  # fleet: straight to each module instead of through Traefik
        self.label = mode if mode == "embedded" else ("fleet-direct" if direct else "fleet")
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.bases: dict[str, str] = {}  # where requests for each module are sent
        self.modules: dict[str, str] = {}  # each module's own address (its /metrics, /health)
        self.prefixes: list[tuple[str, str]] = []

    def start(self, extra_env: dict[str, str] | None = None) -> None:
        from quark_sdk.cli import installed_modules
        from quark_sdk.embedded import parent_death_signal

        self.root.mkdir(parents=True)
        cmd = [str(VENV_BIN / "quark"), "dev", "--port", str(self.port), "--data-dir", str(self.root)]
        if self.mode == "fleet":
            cmd += ["--fleet", "--free-ports"]
        if self.only is not None:
            cmd += ["--modules", self.only]
        env = {k: v for k, v in os.environ.items() if not k.startswith("QUARK_")} | STATION_ENV | (extra_env or {})
        log = self.root / "station.log"
        # SIGINT (a clean stop) if this benchmark dies: a killed run must not leave a station behind.
        self.proc = subprocess.Popen(cmd, cwd=self.root, env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT,
                                     start_new_session=True, preexec_fn=parent_death_signal(signal.SIGINT))
        banner = "Quark fleet is up" if self.mode == "fleet" else "Quark is up at"
        deadline = time.monotonic() + 240
        while banner not in log.read_text(errors="replace"):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"station did not start:\n{log.read_text(errors='replace')[-3000:]}")
            time.sleep(0.2)
        manifests = {m.name: m.manifest() for m in installed_modules()}
        if self.mode == "fleet":
            self.modules = json.loads((self.root / "fleet.json").read_text())["modules"]
        else:
            self.modules = {n: f"http://127.0.0.1:{self.port}" for n in manifests}
        gateway = f"http://127.0.0.1:{self.port}"  # the embedded gateway, or Traefik in front of the fleet
        self.bases = dict(self.modules) if self.direct else {n: gateway for n in self.modules}
        self.prefixes = sorted(((p, n) for n, mf in manifests.items() for p in mf.exposes.api),
                               key=lambda x: -len(x[0]))
        for base in set(self.modules.values()):
            while True:
                try:
                    if httpx.get(base + "/health/ready", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise SystemExit(f"{base} not ready")
                time.sleep(0.2)

    def url(self, path: str) -> str:
        for prefix, name in self.prefixes:
            if path == prefix or path.startswith((prefix + "/", prefix + "?")):
                return self.bases[name] + path
        raise KeyError(path)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)


@dataclass
class Seeded:
    users: list[dict[str, str]]  # username, id, token, chat (a direct chat of theirs, with messaging)
    has_messaging: bool


async def seed(station: Station, users: int, follows: int, posts: int) -> Seeded:
    """Through the public API only: what the station would have after real use."""
    rng = random.Random(7)
    tag = uuid.uuid4().hex[:4]
    async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=16)) as http:
        sem = asyncio.Semaphore(16)

        async def call(method: str, path: str, token: str | None = None, **kw: Any) -> httpx.Response:
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            async with sem:
                resp = await http.request(method, station.url(path), headers=headers, **kw)
            if resp.status_code >= 400:
                raise SystemExit(f"seeding failed: {method} {path} -> {resp.status_code} {resp.text[:300]}")
            return resp

        async def make_user(i: int) -> dict[str, str]:
            name = f"load{tag}{i}"
            body = (await call("POST", "/api/v1/auth/register", json={
                "username": name, "email": f"{name}@example.com", "password": PASSWORD})).json()
            tokens = (await call("POST", "/api/v1/auth/login", json={"login": name, "password": PASSWORD})).json()
            return {"username": name, "id": body["id"], "token": tokens["access_token"]}

        people = list(await asyncio.gather(*(make_user(i) for i in range(users))))

        async def profile_ready(p: dict[str, str]) -> None:
            for _ in range(300):
                resp = await http.get(station.url("/api/v1/users/me"),
                                      headers={"Authorization": f"Bearer {p['token']}"})
                if resp.status_code == 200:
                    return
                await asyncio.sleep(0.1)
            raise SystemExit(f"profile of {p['username']} never appeared")

        await asyncio.gather(*(profile_ready(p) for p in people))
        await asyncio.gather(*(
            call("POST", f"/api/v1/users/{other['username']}/follow", p["token"])
            for p in people for other in rng.sample([o for o in people if o is not p], min(follows, users - 1))))
        await asyncio.gather(*(
            call("POST", "/api/v1/posts", rng.choice(people)["token"], json={
                "title": f"Seed post {i}", "body": "Some *seed* text " * 20, "tags": ["load"], "publish": True})
            for i in range(posts)))
        has_messaging = "messaging" in station.modules
        if has_messaging:
            async def open_chat(p: dict[str, str]) -> None:
                other = rng.choice([o for o in people if o is not p])
                for _ in range(100):  # the messaging service learns about users from quark.user.* events
                    resp = await http.post(station.url("/api/v1/chats/direct"), json={"user_id": other["id"]},
                                           headers={"Authorization": f"Bearer {p['token']}"})
                    if resp.status_code in (200, 201):
                        p["chat"] = resp.json()["id"]
                        return
                    await asyncio.sleep(0.1)
                raise SystemExit(f"direct chat for {p['username']}: {resp.status_code} {resp.text[:200]}")

            await asyncio.gather(*(open_chat(p) for p in people))
    await settle(station)
    return Seeded(people, has_messaging)


async def settle(station: Station, quiet_polls: int = 3) -> None:
    """Wait until the seeding's events are through (outboxes published, consumers caught up): measuring while
    the station still fans out the seed posts would measure the seeding."""
    from prometheus_client.parser import text_string_to_metric_families

    async with httpx.AsyncClient(timeout=10) as http:
        quiet = 0
        for _ in range(600):
            pending = 0.0
            for base in set(station.modules.values()):
                text = (await http.get(base + "/metrics")).text
                for family in text_string_to_metric_families(text):
                    if family.name in ("quark_outbox_backlog", "quark_consumer_pending_messages"):
                        pending += sum(sample.value for sample in family.samples)
            quiet = quiet + 1 if pending == 0 else 0
            if quiet >= quiet_polls:
                return
            await asyncio.sleep(0.5)
    print("warning: the station never went quiet after seeding", flush=True)


# ----------------------------------------------------------------------------- the load generator


class Conn:
    """A raw HTTP/1.1 keep-alive connection: the generator must cost far less than the server it measures."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int) -> Conn:
        return cls(*await asyncio.open_connection("127.0.0.1", port))

    async def request(self, method: str, path: str, token: str | None, body: bytes | None) -> tuple[int, bytes]:
        head = f"{method} {path} HTTP/1.1\r\nHost: load\r\n"
        if token:
            head += f"Authorization: Bearer {token}\r\n"
        if body is not None:
            head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        self.writer.write(head.encode() + b"\r\n" + (body or b""))
        status = int((await self.reader.readline()).split()[1])
        length = 0
        while True:
            line = await self.reader.readline()
            if line in (b"\r\n", b""):
                break
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        return status, await self.reader.readexactly(length)


Op = tuple[str, str, str, str | None, bytes | None]  # name, method, url (http://host:port/path), token, body


def plan(seeded: Seeded, station_urls: dict[str, str], n: int, rng: random.Random) -> list[Op]:
    """The request sequence for one step (drawn up front: the generator only sends)."""
    ops: list[Op] = []
    users = seeded.users
    for i in range(n):
        me = rng.choice(users)
        r = rng.random()
        if seeded.has_messaging and rng.random() < 0.05:
            body = json.dumps({"body": f"hi {i}", "client_msg_id": uuid.uuid4().hex}).encode()
            ops.append(("message", "POST", station_urls["message"].format(chat=me["chat"]), me["token"], body))
        elif r < 0.6:
            ops.append(("home", "GET", station_urls["home"], me["token"], None))
        elif r < 0.9:
            other = rng.choice(users)
            ops.append(("user", "GET", station_urls["user"].format(username=other["username"]), me["token"], None))
        else:
            body = json.dumps({"title": f"Load {i}", "body": "Load test *post* body.", "publish": True}).encode()
            ops.append(("compose", "POST", station_urls["compose"], me["token"], body))
    return ops


async def generate(ops: list[Op], rate: float, connections: int) -> dict[str, Any]:
    """Open loop: op i is due at start + i/rate whatever happened before; latency from that instant."""
    from urllib.parse import urlsplit

    pools: dict[int, asyncio.Queue[Conn]] = {}
    for port in {urlsplit(op[2]).port or 80 for op in ops}:
        pools[port] = asyncio.Queue()
        for _ in range(connections):
            pools[port].put_nowait(await Conn.open(port))
    results: dict[str, list[float]] = {}
    errors: dict[str, int] = {}
    samples: dict[str, str] = {}  # the first error of each operation, to say why

    async def send(op: Op, intended: float) -> None:
        name, method, url, token, body = op
        parts = urlsplit(url)
        pool = pools[parts.port or 80]
        conn = await pool.get()
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        try:
            try:
                status, answer = await conn.request(method, target, token, body)
            except (IndexError, ConnectionResetError, asyncio.IncompleteReadError):
                # The server closed this keep-alive connection while it sat idle (uvicorn's keep-alive
                # timeout) before reading the request: open a new one and send it again, as clients do.
                conn.writer.close()
                conn = await Conn.open(parts.port or 80)
                status, answer = await conn.request(method, target, token, body)
        except (OSError, asyncio.IncompleteReadError, ValueError, IndexError) as exc:
            status, answer = 599, repr(exc).encode()
            conn = await Conn.open(parts.port or 80)
        finally:
            pool.put_nowait(conn)
        results.setdefault(name, []).append(time.perf_counter() - intended)
        if status >= 400:
            errors[name] = errors.get(name, 0) + 1
            samples.setdefault(name, f"{status} {answer[:200].decode(errors='replace')}")

    start = time.perf_counter()
    tasks = []
    for i, op in enumerate(ops):
        intended = start + i / rate
        delay = intended - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(send(op, intended)))
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - start
    for pool in pools.values():
        while not pool.empty():
            pool.get_nowait().writer.close()
    everything = [x for v in results.values() for x in v]
    return {
        "achieved": len(everything) / elapsed, "errors": sum(errors.values()), "requests": len(everything),
        "error_samples": samples,
        "p50": percentile(everything, 50) * 1000, "p95": percentile(everything, 95) * 1000,
        "p99": percentile(everything, 99) * 1000,
        "ops": {k: {"n": len(v), "p50": percentile(v, 50) * 1000, "p95": percentile(v, 95) * 1000,
                    "p99": percentile(v, 99) * 1000, "errors": errors.get(k, 0)} for k, v in sorted(results.items())},
    }


def generator_proc(out: Any, ops: list[Op], rate: float, connections: int) -> None:
    out.put(uvloop.run(generate(ops, rate, connections)))


def run_step(ops: list[Op], rate: float, connections: int) -> dict[str, Any]:
    """In its own process, so the generator never shares a core's event loop with anything it measures."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=generator_proc, args=(queue, ops, rate, connections))
    proc.start()
    result = queue.get()
    proc.join()
    return dict(result)


# ----------------------------------------------------------------------------- the baseline


HELLO = '''
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", b"17")]})
    await send({"type": "http.response.body", "body": b'{"hello":"world"}'})
'''


def start_hello(root: Path) -> tuple[subprocess.Popen[bytes], int]:
    (root / "hello.py").write_text(HELLO)
    port = free_port()
    proc = subprocess.Popen([str(VENV_BIN / "uvicorn"), "hello:app", "--port", str(port), "--log-level", "warning",
                             "--no-access-log", "--loop", "uvloop"], cwd=root)
    for _ in range(100):
        try:
            httpx.get(f"http://127.0.0.1:{port}/", timeout=1)
            return proc, port
        except httpx.HTTPError:
            time.sleep(0.1)
    raise SystemExit("hello world baseline did not start")



# ----------------------------------------------------------------------------- profiling


PROFILE_PG_ARGS = "-c shared_preload_libraries=pg_stat_statements -c pg_stat_statements.track=all"


async def pg_stats(station: Station, reset: bool) -> list[dict[str, Any]]:
    import asyncpg

    infra = json.loads(next(station.root.rglob("infra.json")).read_text())
    conn = await asyncpg.connect(f"postgresql://postgres@127.0.0.1:{infra['ports']['postgres']}/postgres")
    try:
        await conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        if reset:
            await conn.execute("SELECT pg_stat_statements_reset()")
            return []
        rows = await conn.fetch(
            "SELECT d.datname, s.calls, s.total_exec_time, s.mean_exec_time, s.rows, s.query "
            "FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid "
            "ORDER BY s.total_exec_time DESC LIMIT 25")
        return [dict(r) for r in rows]
    finally:
        await conn.close()


async def pg_sessions(station: Station) -> dict[str, int]:
    """Connections opened so far per database (`pg_stat_database.sessions`): pool churn shows here."""
    import asyncpg

    infra = json.loads(next(station.root.rglob("infra.json")).read_text())
    conn = await asyncpg.connect(f"postgresql://postgres@127.0.0.1:{infra['ports']['postgres']}/postgres")
    try:
        rows = await conn.fetch("SELECT datname, sessions FROM pg_stat_database WHERE datname IS NOT NULL")
        return {r["datname"]: int(r["sessions"]) for r in rows}
    finally:
        await conn.close()


def summarize_profile(path: Path, top: int = 25) -> None:
    """Collapsed py-spy stacks → samples per process, and the hottest frames (self and inclusive)."""
    per_proc: dict[str, int] = {}
    self_time: dict[str, int] = {}
    inclusive: dict[str, int] = {}
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count_s = line.rpartition(" ")
        if not count_s.isdigit():
            continue
        count = int(count_s)
        frames = stack.split(";")
        proc = frames[0] if frames and frames[0].startswith("process ") else "process ?"
        proc = " ".join(proc.split()[:3])[:90]
        per_proc[proc] = per_proc.get(proc, 0) + count
        total += count
        self_time[frames[-1]] = self_time.get(frames[-1], 0) + count
        for frame in set(frames[1:]):
            inclusive[frame] = inclusive.get(frame, 0) + count
    print(f"\nprofile: {total} samples (100/s per busy thread) in {path}")
    for name, n in sorted(per_proc.items(), key=lambda x: -x[1]):
        print(f"  {n:>7} {100 * n / max(total, 1):5.1f}%  {name}")
    print("hottest frames, self:")
    for name, n in sorted(self_time.items(), key=lambda x: -x[1])[:top]:
        print(f"  {n:>7} {100 * n / max(total, 1):5.1f}%  {name[:150]}")
    print("hottest frames, inclusive:")
    for name, n in sorted(inclusive.items(), key=lambda x: -x[1])[:top * 2]:
        print(f"  {n:>7} {100 * n / max(total, 1):5.1f}%  {name[:150]}")


def profile_step(station: Station, ops: list[Op], rate: float, seconds: float, connections: int,
                 out_dir: Path) -> dict[str, Any]:
    """One step at `rate` with py-spy on the station (its children included) and statement statistics."""
    import shutil

    out_dir.mkdir(parents=True, exist_ok=True)
    stacks = out_dir / f"{station.mode}-{int(rate)}.txt"
    asyncio.run(pg_stats(station, reset=True))
    sessions_before = asyncio.run(pg_sessions(station))
    spy = shutil.which("py-spy") or str(VENV_BIN / "py-spy")
    assert station.proc is not None
    recorder = subprocess.Popen([spy, "record", "--pid", str(station.proc.pid), "--subprocesses", "--nonblocking",
                                 "--rate", "100", "--format", "raw", "--output", str(stacks),
                                 "--duration", str(int(seconds))], stdout=subprocess.DEVNULL)
    time.sleep(1.0)  # py-spy attaches to every process first
    result = run_step(ops, rate, connections)
    recorder.wait()
    statements = asyncio.run(pg_stats(station, reset=False))
    sessions_after = asyncio.run(pg_sessions(station))
    summarize_profile(stacks)
    opened = {db: n - sessions_before.get(db, 0) for db, n in sessions_after.items()
              if n - sessions_before.get(db, 0) > 0 and db != "postgres"}
    print("\nPostgreSQL connections opened during the step (pg_stat_database.sessions): "
          + (", ".join(f"{db} {n}" for db, n in sorted(opened.items())) or "none"))
    print("\nPostgreSQL statements by total time (pg_stat_statements, this step):")
    for r in statements:
        query = " ".join(r["query"].split())[:110]
        print(f"  {r['total_exec_time']:>9.1f} ms {r['calls']:>7} calls {r['mean_exec_time']:>7.3f} ms/call "
              f"{r['datname']:<10} {query}")
    return result

# ----------------------------------------------------------------------------- main


def sweep(label: str, make_ops: Any, rates: list[float], seconds: float, connections: int) -> list[dict[str, Any]]:
    rows = []
    for rate in rates:
        result = run_step(make_ops(int(rate * seconds)), rate, connections)
        result["rate"] = rate
        rows.append(result)
        print(f"  {label:<9} {rate:>6.0f}/s  achieved {result['achieved']:>7.1f}/s  p50 {result['p50']:>7.1f} ms  "
              f"p95 {result['p95']:>7.1f} ms  p99 {result['p99']:>7.1f} ms  errors {result['errors']}", flush=True)
        for op, sample in result["error_samples"].items():
            print(f"    first {op} error: {sample}", flush=True)
        if result["p99"] > P99_TARGET_MS * 4 or result["errors"] > 0.01 * result["requests"]:
            break  # far past the knee: higher rates only measure the queue
    return rows


def knee(rows: list[dict[str, Any]]) -> float | None:
    """The highest offered rate whose p99 stayed under the target (None: not even the first)."""
    ok = [r["rate"] for r in rows if r["p99"] <= P99_TARGET_MS and r["errors"] == 0]
    return max(ok) if ok else None


def report(mode: str, rows: list[dict[str, Any]], base_rows: list[dict[str, Any]]) -> None:
    print(f"\n{mode}: per operation at each step")
    for r in rows:
        ops = "  ".join(f"{k} n={v['n']} p50={v['p50']:.1f} p95={v['p95']:.1f} p99={v['p99']:.1f} err={v['errors']}"
                        for k, v in r["ops"].items())
        print(f"  {r['rate']:>6.0f}/s  {ops}")
    k_station, k_base = knee(rows), knee(base_rows)
    best_station = max(r["achieved"] for r in rows)
    best_base = max(r["achieved"] for r in base_rows)
    ratio = (k_station or 0) / k_base if k_base else float("nan")
    print(f"{mode}: p99 ≤ {P99_TARGET_MS:.0f} ms up to {k_station or 0:.0f} req/s offered "
          f"(hello world: {k_base or 0:.0f} req/s) → ratio {ratio:.2f}")
    print(f"{mode}: best achieved {best_station:.0f} req/s (hello world {best_base:.0f} req/s) → ratio "
          f"{best_station / best_base:.2f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mode", choices=["embedded", "fleet", "both"], default="both")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--fleet-direct", action="store_true",
                        help="fleet: send each request straight to its module, not through Traefik")
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--profile", type=float, metavar="RATE", help="one profiled step at RATE req/s (no sweep)")
    parser.add_argument("--profile-seconds", type=float, default=20.0)
    parser.add_argument("--profile-dir", type=Path, default=Path("bench-profiles"))
    parser.add_argument("--profile-only", choices=["home", "user", "compose", "message"],
                        help="profile one operation alone at RATE (what it sets off, consumers included)")
    parser.add_argument("--modules", help="run only these modules (quark dev --modules), e.g. to see what one costs")
    parser.add_argument("--cost", action="store_true", help="CPU per operation of the station (no sweep)")
    parser.add_argument("--cost-requests", type=int, default=300)
    args = parser.parse_args()
    modes = ["embedded"] if args.quick and args.mode == "both" else (["embedded", "fleet"] if args.mode == "both"
                                                                      else [args.mode])
    users, follows, posts = (30, 10, 100) if args.quick else (200, 20, 1000)
    seconds = 3.0 if args.quick else args.seconds
    rates: list[float] = [25, 50, 100, 200, 300, 400, 600, 800, 1200, 1600]
    print(f"load test: {users} users x {follows} follows, {posts} seed posts; steps of {seconds:.0f} s; "
          f"{os.cpu_count()} CPUs", flush=True)
    with tempfile.TemporaryDirectory(prefix="quark-load-") as tmp:
        root = Path(tmp)
        if args.profile:
            return profile_main(args, modes, root, users, follows, posts)
        if args.cost:
            return cost_main(args, modes, root, users, follows, posts)
        hello, hello_port = start_hello(root)
        try:
            hello_url = f"http://127.0.0.1:{hello_port}/"
            print("baseline: bare uvicorn hello world", flush=True)
            base_rows = sweep("hello", lambda n: [("hello", "GET", hello_url, None, None)] * n, rates, seconds,
                              args.connections)
        finally:
            hello.terminate()
            hello.wait()
        for mode in modes:
            station = Station(mode, root, direct=args.fleet_direct, only=args.modules)
            station.start()
            try:
                seeded = asyncio.run(seed(station, users, follows, posts))
                urls = {"home": station.url("/api/v1/feed/home?limit=20"),
                        "user": station.url("/api/v1/feed/user/") + "{username}?limit=20",
                        "compose": station.url("/api/v1/posts")}
                if seeded.has_messaging:
                    urls["message"] = station.url("/api/v1/chats/") + "{chat}/messages"
                rng = random.Random(11)
                print(f"{station.label}: mix 60% home, 30% user timeline, 10% compose"
                      f"{', +5% messages' if seeded.has_messaging else ''}", flush=True)
                rows = sweep(station.label, lambda n, s=seeded, u=urls, g=rng: plan(s, u, n, g), rates, seconds,
                             args.connections)
                report(station.label, rows, base_rows)
            finally:
                station.stop()
    return 0


def mix_urls(station: Station, seeded: Seeded) -> dict[str, str]:
    urls = {"home": station.url("/api/v1/feed/home?limit=20"),
            "user": station.url("/api/v1/feed/user/") + "{username}?limit=20",
            "compose": station.url("/api/v1/posts")}
    if seeded.has_messaging:
        urls["message"] = station.url("/api/v1/chats/") + "{chat}/messages"
    return urls


def profile_main(args: argparse.Namespace, modes: list[str], root: Path, users: int, follows: int,
                 posts: int) -> int:
    for mode in modes:
        station = Station(mode, root, direct=args.fleet_direct, only=args.modules)
        station.start({"QUARK_EMBEDDED_POSTGRES_ARGS": PROFILE_PG_ARGS})
        try:
            seeded = asyncio.run(seed(station, users, follows, posts))
            n = int(args.profile * args.profile_seconds)
            ops = plan(seeded, mix_urls(station, seeded), n * (40 if args.profile_only else 1), random.Random(11))
            if args.profile_only:
                ops = [o for o in ops if o[0] == args.profile_only][:n]
            result = profile_step(station, ops, args.profile, args.profile_seconds, args.connections, args.profile_dir)
            print(f"\n{station.label} at {args.profile:.0f}/s: achieved {result['achieved']:.1f}/s "
                  f"p50 {result['p50']:.1f} p99 {result['p99']:.1f} ms errors {result['errors']}")
            for k, v in result["ops"].items():
                print(f"  {k:<8} n={v['n']} p50={v['p50']:.1f} p95={v['p95']:.1f} p99={v['p99']:.1f} "
                      f"err={v['errors']}")
        finally:
            station.stop()
    return 0


def station_cpu(station: Station) -> dict[str, float]:
    """CPU seconds (user + system) of every process of the station, by kind; exited children count
    through their parent's children_* times."""
    import psutil

    assert station.proc is not None
    out: dict[str, float] = {}
    root = psutil.Process(station.proc.pid)
    gone = root.cpu_times()
    out["exited"] = gone.children_user + gone.children_system
    for proc in [root, *root.children(recursive=True)]:
        try:
            name, times = proc.name(), proc.cpu_times()
            cmd = " ".join(proc.cmdline())
        except psutil.Error:
            continue
        kind = ("postgres" if "postgres" in name else "valkey" if "valkey" in name or "redis" in name
                else "nats" if "nats" in name else "traefik" if "traefik" in name
                else "ai workers" if "forkserver" in cmd or "cpu_worker" in cmd or "multiprocessing" in cmd
                else "python")
        out[kind] = out.get(kind, 0.0) + times.user + times.system
    return out


def cost_main(args: argparse.Namespace, modes: list[str], root: Path, users: int, follows: int, posts: int) -> int:
    for mode in modes:
        station = Station(mode, root, direct=args.fleet_direct, only=args.modules)
        station.start()
        try:
            seeded = asyncio.run(seed(station, users, follows, posts))
            urls = mix_urls(station, seeded)
            rng = random.Random(13)
            print(f"\n{station.label}: CPU per request, each operation alone ({args.cost_requests} requests at 50/s, "
                  "then until the station is quiet), ms", flush=True)
            kinds = ["python", "ai workers", "postgres", "valkey", "nats"] + (["traefik"] if mode == "fleet" else [])
            print(f"  {'operation':<10}" + "".join(f"{k:>12}" for k in kinds) + f"{'exited':>9}{'total':>9}"
                  f"{'p50 ms':>9}", flush=True)
            # What the idle station burns (heartbeats, polls, routing-table refreshes) is taken off each figure.
            asyncio.run(settle(station))
            idle_from, t0 = station_cpu(station), time.monotonic()
            time.sleep(5)
            idle_to, idle_secs = station_cpu(station), time.monotonic() - t0
            idle = {k: (idle_to.get(k, 0.0) - idle_from.get(k, 0.0)) / idle_secs for k in idle_to}
            print("  idle station: " + ", ".join(f"{k} {v * 1000:.0f} ms/s" for k, v in idle.items() if v > 0),
                  flush=True)
            for op in ("home", "user", "compose", "message"):
                if op == "message" and not seeded.has_messaging:
                    continue
                ops = [o for o in plan(seeded, urls, args.cost_requests * 40, rng) if o[0] == op][:args.cost_requests]
                before, t0 = station_cpu(station), time.monotonic()
                result = run_step(ops, 50.0, 8)
                asyncio.run(settle(station))
                after, elapsed = station_cpu(station), time.monotonic() - t0
                per = {k: (after.get(k, 0.0) - before.get(k, 0.0) - idle.get(k, 0.0) * elapsed) * 1000 / len(ops)
                       for k in after}
                print(f"  {op:<10}" + "".join(f"{per.get(k, 0.0):>12.2f}" for k in kinds)
                      + f"{per.get('exited', 0.0):>9.2f}{sum(per.values()):>9.2f}{result['p50']:>9.1f}"
                      + (f"  errors {result['errors']}" if result["errors"] else ""), flush=True)
        finally:
            station.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
