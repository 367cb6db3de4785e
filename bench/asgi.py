"""ASGI server and JSON encoding benchmark (issue #21): uvicorn+uvloop+httptools against Granian, and
FastAPI's default response_model serialization against ORJSONResponse, on a route shaped like a module's.

One small FastAPI app, no database: `GET /items` returns 20 rows (id, username, title, created_at,
tags) as plain dicts, the way a service function hands rows to its router, through
`response_model=list[Item]`, so FastAPI validates and serializes them. Variants:

- uvicorn, `/items`: FastAPI's default. FastAPI (0.13x+) serializes a response_model straight to JSON
  bytes with Pydantic's Rust core (`TypeAdapter.dump_json`) when no response class is set.
- uvicorn, `/items/orjson`: the handler validates the rows through the same model and returns
  `ORJSONResponse([item.model_dump() ...])`. A Response returned directly skips FastAPI's response_model
  serialization (filtering, validation), so adopting it means validating/serializing through the model
  first, as done here.
- uvicorn, `/items/orjson-class`: `response_model` kept and `response_class=ORJSONResponse` on the
  route: FastAPI validates and filters to Python objects, orjson renders them.
- uvicorn, `/hello`: a plain `{"hello": "world"}`: the floor of framework + server.
- granian, `/items` and `/hello`: the same app under Granian (ASGI interface, 1 worker, uvloop,
  HTTP/1), skipped with a message if the `granian` package is not installed.

uvicorn is started with the options `quark serve` uses (shared/quark_sdk/cli/serve.py: log_level
warning, no access log, lifespan on, ws_ping_interval 20, graceful shutdown 10 s; loop/http "auto",
which resolve to uvloop and httptools, named explicitly here), and both servers serve the app wrapped
in the SDK's `FreezeHeapAfterStartup`. Each server runs in its own process, so does the load generator
(raw asyncio HTTP/1.1 keep-alive connections, uvloop).

Closed loop at N connections gives the maximum throughput, all variants interleaved round by round
(a neighbour's load hits them alike; medians reported); then open loop at one fixed rate for every
variant (by default half the lowest maximum of the run), latency measured from each request's intended
send time. Ratios are against uvicorn `/items` (the default). CPU ms per request of the server's
process tree is printed beside: it moves less with the neighbours' load than req/s.

    .venv/bin/python bench/asgi.py             # 5 s phases, 3 rounds
    .venv/bin/python bench/asgi.py --quick     # 2 s phases, 1 round
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import multiprocessing as mp
import os
import statistics
import subprocess
import sys
import time
import uuid
import warnings
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import uvloop

HERE = Path(__file__).resolve().parent


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


# ----------------------------------------------------------------------------- the app


def rows() -> list[dict[str, Any]]:
    """20 rows as a service function would return them (plain dicts)."""
    words = ["quark", "python", "async", "river", "coffee", "garden", "music", "design", "ocean", "code"]
    at = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
    return [
        {
            "id": uuid.UUID(int=i + 1, version=4),
            "username": f"user{i}",
            "title": f"{words[i % 10].title()} notes number {i}",
            "created_at": at - timedelta(minutes=7 * i),
            "tags": [words[i % 10], words[(i * 3 + 1) % 10]],
            "internal_score": i * 1.5,  # not in the model: the response_model must filter it out
        }
        for i in range(20)
    ]


def make_app() -> Any:
    """The benchmark app, wrapped like `quark serve` wraps a module's app (Granian's --factory target)."""
    from fastapi import FastAPI
    from fastapi.responses import ORJSONResponse
    from pydantic import BaseModel, TypeAdapter

    from quark_sdk.app import FreezeHeapAfterStartup

    # ORJSONResponse is deprecated in this FastAPI (it warns on each instantiation); measured anyway.
    warnings.filterwarnings("ignore", message="ORJSONResponse is deprecated")

    class Item(BaseModel):
        id: uuid.UUID
        username: str
        title: str
        created_at: datetime
        tags: list[str]

    items_adapter = TypeAdapter(list[Item])
    data = rows()
    app = FastAPI()

    @app.get("/hello")
    async def hello() -> dict[str, str]:
        return {"hello": "world"}

    @app.get("/items", response_model=list[Item])
    async def items() -> Any:
        return data

    @app.get("/items/orjson")
    async def items_orjson() -> ORJSONResponse:
        # Returning a Response skips FastAPI's response_model step: validate through the model first.
        validated = items_adapter.validate_python(data)
        return ORJSONResponse([item.model_dump() for item in validated])

    @app.get("/items/orjson-class", response_model=list[Item], response_class=ORJSONResponse)
    async def items_orjson_class() -> Any:
        return data

    return FreezeHeapAfterStartup(app)


def serve_uvicorn(port: int) -> None:
    import uvicorn

    # The options of `quark serve` (shared/quark_sdk/cli/serve.py); loop/http "auto" resolve to these.
    uvicorn.run(make_app(), host="127.0.0.1", port=port, log_level="warning", access_log=False, lifespan="on",
                ws_ping_interval=20, timeout_graceful_shutdown=10, loop="uvloop", http="httptools")


def granian_cmd(port: int) -> list[str]:
    return [sys.executable, "-m", "granian", "--interface", "asgi", "--workers", "1", "--loop", "uvloop",
            "--http", "1", "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning",
            "--no-access-log", "--working-dir", str(HERE), "--factory", "asgi:make_app"]


def start_server(cmd: list[str], port: int, log: Path) -> subprocess.Popen[bytes]:
    import httpx

    out = open(log, "ab")  # noqa: SIM115 - kept open for the child's lifetime
    proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{cmd} exited: {log.read_text()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/hello", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{cmd} not up: {log.read_text()[-2000:]}")


def cpu_seconds(pid: int) -> float:
    """CPU seconds of a server and its children (Granian serves from a worker process)."""
    import psutil

    total = 0.0
    root = psutil.Process(pid)
    for p in [root, *root.children(recursive=True)]:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.Error:
            pass
    return total


# ----------------------------------------------------------------------------- load generator


class Conn:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int) -> Conn:
        return cls(*await asyncio.open_connection("127.0.0.1", port))

    async def get(self, path: str) -> tuple[int, bytes]:
        self.writer.write(f"GET {path} HTTP/1.1\r\nHost: bench\r\n\r\n".encode())
        status = int((await self.reader.readline()).split()[1])
        length = 0
        while True:
            line = await self.reader.readline()
            if line in (b"\r\n", b""):
                break
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        return status, await self.reader.readexactly(length)


async def generate(port: int, path: str, mode: str, rate: float, seconds: float, connections: int) -> dict[str, Any]:
    conns = [await Conn.open(port) for _ in range(connections)]
    latencies: list[float] = []
    errors = 0

    async def one(conn: Conn, intended: float) -> None:
        nonlocal errors
        status, _ = await conn.get(path)
        errors += status != 200
        latencies.append(time.perf_counter() - intended)

    start, cpu_start = time.perf_counter(), time.process_time()
    if mode == "closed":  # back to back on every connection: the maximum throughput
        end = start + seconds

        async def worker(conn: Conn) -> None:
            while time.perf_counter() < end:
                await one(conn, time.perf_counter())

        await asyncio.gather(*(worker(c) for c in conns))
    else:  # open loop: request i is due at start + i/rate, whatever happened before
        free: asyncio.Queue[Conn] = asyncio.Queue()
        for c in conns:
            free.put_nowait(c)

        async def dispatch(intended: float) -> None:
            conn = await free.get()
            try:
                await one(conn, intended)
            finally:
                free.put_nowait(conn)

        tasks = []
        for i in range(int(rate * seconds)):
            intended = start + i / rate
            delay = intended - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(dispatch(intended)))
        await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - start
    for c in conns:
        c.writer.close()
    # Near 1.0 the generator itself (one Python process) is the limit, not the server.
    client_cpu = (time.process_time() - cpu_start) / elapsed
    return {"requests": len(latencies), "rps": len(latencies) / elapsed, "errors": errors, "client_cpu": client_cpu,
            "p50_ms": percentile(latencies, 50) * 1000, "p99_ms": percentile(latencies, 99) * 1000}


def _generator_proc(out: Any, *args: Any) -> None:
    out.put(uvloop.run(generate(*args)))


def run_generator(*args: Any) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    proc = ctx.Process(target=_generator_proc, args=(out, *args))
    proc.start()
    result: dict[str, Any] = out.get(timeout=600)
    proc.join(30)
    return result


# ----------------------------------------------------------------------------- main


def check_bodies(ports: dict[str, int]) -> None:
    """Every /items variant answers the same items, filtered by the model (internal_score dropped)."""
    import httpx

    ref = None
    for server, port in ports.items():
        for path in ("/items", "/items/orjson", "/items/orjson-class") if server == "uvicorn" else ("/items",):
            body = httpx.get(f"http://127.0.0.1:{port}{path}").json()
            assert len(body) == 20 and "internal_score" not in body[0], (server, path, body[0])
            # orjson writes "+00:00", Pydantic "Z": compare the parsed datetimes.
            for item in body:
                item["created_at"] = datetime.fromisoformat(item["created_at"].replace("Z", "+00:00"))
            ref = ref or body
            assert body == ref, (server, path)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved closed-loop rounds (median)")
    parser.add_argument("--rate", type=float, default=0, help="open-loop rate (default: half the lowest max)")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--serve-uvicorn", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_uvicorn:
        serve_uvicorn(args.serve_uvicorn)
        return 0
    if args.quick:
        args.seconds, args.rounds = 2.0, 1

    from quark_sdk.embedded import free_port

    has_granian = importlib.util.find_spec("granian") is not None
    log_dir = Path(os.environ.get("TMPDIR", "/tmp"))
    ports = {"uvicorn": free_port()}
    procs = {"uvicorn": start_server([sys.executable, __file__, "--serve-uvicorn", str(ports["uvicorn"])],
                                     ports["uvicorn"], log_dir / "quark-bench-asgi-uvicorn.log")}
    variants = [("uvicorn", "/items"), ("uvicorn", "/items/orjson"), ("uvicorn", "/items/orjson-class"),
                ("uvicorn", "/hello")]
    try:
        if has_granian:
            ports["granian"] = free_port()
            procs["granian"] = start_server(granian_cmd(ports["granian"]), ports["granian"],
                                            log_dir / "quark-bench-asgi-granian.log")
            variants += [("granian", "/items"), ("granian", "/hello")]
        else:
            print("granian is not installed: the Granian variants are skipped")
        check_bodies(ports)
        conns, secs = args.connections, args.seconds

        def phase(server: str, path: str, mode: str, rate: float, seconds: float) -> dict[str, Any]:
            before = cpu_seconds(procs[server].pid)
            result = run_generator(ports[server], path, mode, rate, seconds, conns)
            result["cpu_ms"] = (cpu_seconds(procs[server].pid) - before) * 1000 / max(result["requests"], 1)
            return result

        for server, path in variants:  # untimed warm-up
            phase(server, path, "closed", 0, 1.0)
        closed: dict[tuple[str, str], list[dict[str, Any]]] = {v: [] for v in variants}
        for r in range(args.rounds):
            for v in variants:
                closed[v].append(phase(*v, "closed", 0, secs))
            print(f"round {r + 1}: " + ", ".join(f"{s} {p} {closed[(s, p)][-1]['rps']:.0f}" for s, p in variants),
                  flush=True)
        maxima = {v: statistics.median(x["rps"] for x in closed[v]) for v in variants}
        rate = args.rate or round(min(maxima.values()) / 2, -1)
        opened = {v: phase(*v, "open", rate, secs) for v in variants}
        load = os.getloadavg()
    finally:
        for p in procs.values():
            p.terminate()
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()

    base = ("uvicorn", "/items")
    ratios = {v: statistics.median(x["rps"] / b["rps"] for x, b in zip(closed[v], closed[base], strict=True))
              for v in variants}
    print(f"\nFastAPI route, 20 items through response_model, one server process each; {secs:g}s per phase, "
          f"{args.rounds} interleaved closed-loop round(s) at {conns} connections (medians), then open loop at "
          f"{rate:g} req/s for every variant; load average at the end {load[0]:.1f} on {os.cpu_count()} CPUs\n")
    print(f"{'server':<8} {'route':<20} {'max req/s':>10} {'vs default':>10} {'CPU ms/req':>10} "
          f"{'client CPU':>10} {'p50':>9} {'p99':>9} {'errors':>7}")
    for v in variants:
        o = opened[v]
        errors = sum(x["errors"] for x in closed[v]) + o["errors"]
        cpu = statistics.median(x["cpu_ms"] for x in closed[v])
        client = statistics.median(x["client_cpu"] for x in closed[v])
        print(f"{v[0]:<8} {v[1]:<20} {maxima[v]:>10.0f} {ratios[v]:>9.2f}x {cpu:>10.3f} {client:>10.2f} "
              f"{o['p50_ms']:>7.2f}ms {o['p99_ms']:>7.2f}ms {errors:>7}")
    print("\n(default) uvicorn /items = response_model serialized by FastAPI (Pydantic dump_json). /items/orjson "
          "returns an ORJSONResponse: a Response returned directly skips FastAPI's response_model serialization "
          "(filtering, validation), so it validates through the model first. /items/orjson-class keeps "
          "response_model with response_class=ORJSONResponse. CPU ms/req: the server's process tree, closed loop; "
          "client CPU: the load generator's share of one core in the closed loop (near 1.0 it is the limit).")
    if not has_granian:
        print("granian: skipped (package not installed)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
