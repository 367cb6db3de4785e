"""Blog benchmark: the home timeline page and publish→visible latency, against a bare FastAPI+asyncpg baseline.

One run, one set of embedded servers (PostgreSQL, Valkey, NATS from the wheels):

1. Seed 1,000 users x 100 follows each x 20,000 posts with COPY (bulk SQL), then warm every
   user's home timeline through the service's real cold-read path (the first GET of
   /api/v1/feed/home rebuilds the Redis sorted set from the database), untimed.
2. Baseline: a bare FastAPI + asyncpg endpoint returning 20 rows of `posts` by primary key,
   served by uvicorn in its own process.
3. The blog service (`quark serve blog`, uvicorn, own process) serving GET /api/v1/feed/home?limit=20
   with a real EdDSA user token (a different user per request).
4. The load generator runs in its own process on raw asyncio HTTP/1.1 keep-alive connections
   (uvloop). After an untimed warm-up of each server, closed loop at fixed concurrency gives the
   maximum throughput, baseline and home interleaved in `--rounds` rounds (a neighbour's load hits
   both alike; medians are reported, the ratio is the median of the rounds' ratios); then open loop
   at a constant arrival rate of half each maximum, latency measured from each request's *intended*
   send time (no coordinated omission). CPU milliseconds per request of our own processes (server,
   PostgreSQL with its backends, Valkey) are printed beside the throughput: on a shared machine
   they move far less with the neighbours' load than req/s does.
5. Publish→visible: posts published at a constant rate through POST /api/v1/posts; the time until
   the post is in a follower's home timeline (first seen in the follower's Redis set, then confirmed
   by GET /api/v1/feed/home) is measured from the moment the publish request is sent.

    .venv/bin/python bench/blog.py             # full size, 10 s per phase
    .venv/bin/python bench/blog.py --quick     # smaller seed and shorter phases, for a smoke run
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import uvloop

WORDS = [
    "database",
    "timeline",
    "quark",
    "python",
    "async",
    "redis",
    "stream",
    "kiwi",
    "zebra",
    "river",
    "mountain",
    "coffee",
    "garden",
    "music",
    "science",
    "design",
    "travel",
    "photo",
    "story",
    "winter",
    "summer",
    "ocean",
    "forest",
    "city",
    "night",
    "light",
    "code",
    "rust",
    "cloud",
]


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


# ----------------------------------------------------------------------------- seeding


def sentence(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n))


async def seed(dsn: str, users: int, follows: int, posts: int) -> dict[str, Any]:
    import asyncpg

    rng = random.Random(42)
    user_ids = [str(uuid.UUID(int=rng.getrandbits(128))) for _ in range(users)]
    now = datetime.now(UTC)
    conn = await asyncpg.connect(dsn)
    try:
        await conn.copy_records_to_table(
            "authors",
            columns=["user_id", "username", "display_name", "privacy", "suspended", "deleted", "updated_at"],
            records=[(u, f"user{i}", f"User {i}", "public", False, False, now) for i, u in enumerate(user_ids)],
        )
        follow_rows = []
        followers: dict[str, list[str]] = {u: [] for u in user_ids}
        for u in user_ids:
            for v in rng.sample([x for x in user_ids if x != u], follows):
                follow_rows.append((u, v, now))
                followers[v].append(u)
        await conn.copy_records_to_table(
            "follows", columns=["follower_id", "followee_id", "created_at"], records=follow_rows
        )
        post_rows: list[tuple[Any, ...]] = []
        stat_rows: list[tuple[Any, ...]] = []
        for i in range(posts):
            pid = uuid.UUID(int=rng.getrandbits(128), version=4)
            author = rng.choice(user_ids)
            title = sentence(rng, 5).title()
            body = sentence(rng, 60)
            at = now - timedelta(seconds=rng.uniform(60, 30 * 86400))
            tags = sorted(set(rng.sample(WORDS, 2)))
            post_rows.append(
                (
                    pid,
                    author,
                    f"p-{i}",
                    title,
                    "markdown",
                    body,
                    f"<p>{body}</p>",
                    body,
                    body[:200],
                    False,
                    tags,
                    " ".join(tags),
                    None,
                    [],
                    "public",
                    "published",
                    None,
                    at,
                    at,
                    at,
                    None,
                    False,
                )
            )
            stat_rows.append((pid, rng.randrange(5)))
        await conn.copy_records_to_table(
            "posts",
            columns=[
                "id",
                "author_id",
                "slug",
                "title",
                "body_format",
                "body_source",
                "body_html",
                "body_text",
                "excerpt",
                "excerpt_custom",
                "tags",
                "tags_text",
                "category",
                "media_ids",
                "visibility",
                "status",
                "scheduled_at",
                "published_at",
                "created_at",
                "updated_at",
                "deleted_at",
                "hidden",
            ],
            records=post_rows,
        )
        await conn.copy_records_to_table("post_stats", columns=["post_id", "comment_count"], records=stat_rows)
        await conn.execute("UPDATE post_stats SET reactions = jsonb_build_object('like', (random() * 20)::int)")
        tag_counts: dict[str, int] = {}
        for row in post_rows:
            for t in row[10]:
                tag_counts[t] = tag_counts.get(t, 0) + 1
        await conn.executemany("INSERT INTO tags (name, post_count) VALUES ($1, $2)", list(tag_counts.items()))
        await conn.execute("VACUUM ANALYZE")
    finally:
        await conn.close()
    return {"user_ids": user_ids, "followers": followers, "post_ids": [str(r[0]) for r in post_rows]}


# ----------------------------------------------------------------------------- servers


class _Jwks(BaseHTTPRequestHandler):
    body = b"{}"

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args: Any) -> None:
        pass


def serve_jwks(jwks: dict[str, Any]) -> str:
    _Jwks.body = json.dumps(jwks).encode()
    server = HTTPServer(("127.0.0.1", 0), _Jwks)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_address[1]}/jwks.json"


def baseline_main(dsn: str, port: int) -> None:
    """The baseline: bare FastAPI + asyncpg, 20 rows by primary key (uvicorn, uvloop, httptools)."""
    import asyncpg
    import uvicorn
    from fastapi import FastAPI

    state: dict[str, Any] = {}

    async def lifespan(app: FastAPI) -> Any:
        state["pool"] = await asyncpg.create_pool(dsn, min_size=10, max_size=10)
        state["ids"] = [r["id"] for r in await state["pool"].fetch("SELECT id FROM posts")]
        yield
        await state["pool"].close()

    from contextlib import asynccontextmanager

    app = FastAPI(lifespan=asynccontextmanager(lifespan))

    @app.get("/rows")
    async def rows() -> list[dict[str, Any]]:
        ids = random.sample(state["ids"], 20)
        records = await state["pool"].fetch(
            "SELECT id, author_id, title, slug, excerpt, published_at FROM posts WHERE id = ANY($1::uuid[])", ids
        )
        return [dict(r) for r in records]

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def start_process(cmd: list[str], env: dict[str, str], port: int, log: Path) -> subprocess.Popen[bytes]:
    import httpx

    out = open(log, "ab")  # noqa: SIM115 - kept open for the child's lifetime
    proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{cmd} exited: {log.read_text()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code in (200, 404):
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{cmd} not up: {log.read_text()[-2000:]}")


class CpuMeter:
    """CPU seconds used by a set of processes (a server; PostgreSQL with all its backends; Valkey).

    On a shared machine wall-clock throughput moves with the neighbours' load; CPU time spent
    per request by our own processes does not, so it is reported beside every ratio.
    """

    def __init__(self, pids: dict[str, int]) -> None:
        import psutil

        self.procs = {name: psutil.Process(pid) for name, pid in pids.items()}

    def sample(self) -> dict[str, float]:
        import psutil

        out: dict[str, float] = {}
        for name, proc in self.procs.items():
            # Exited children (closed connections' backends) count through the parent's children_* times.
            root = proc.cpu_times()
            total = root.children_user + root.children_system
            for p in [proc, *proc.children(recursive=True)]:
                try:
                    t = p.cpu_times()
                    total += t.user + t.system
                except psutil.Error:
                    pass
            out[name] = total
        return out


def cpu_delta(before: dict[str, float], after: dict[str, float], requests: int) -> dict[str, float]:
    """Milliseconds of CPU per request for each process group."""
    return {k: (after[k] - before[k]) * 1000 / max(requests, 1) for k in before}


# ----------------------------------------------------------------------------- load generator


class Conn:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int) -> Conn:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer)

    async def get(self, path: str, token: str | None) -> tuple[int, bytes]:
        auth = f"Authorization: Bearer {token}\r\n" if token else ""
        self.writer.write(f"GET {path} HTTP/1.1\r\nHost: bench\r\n{auth}\r\n".encode())
        status = int((await self.reader.readline()).split()[1])
        length = 0
        while True:
            line = await self.reader.readline()
            if line in (b"\r\n", b""):
                break
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        return status, await self.reader.readexactly(length)


async def generate(
    port: int, path: str, tokens: list[str | None], mode: str, value: float, seconds: float, connections: int
) -> dict[str, Any]:
    conns = [await Conn.open(port) for _ in range(connections)]
    latencies: list[float] = []
    errors = 0
    counter = 0

    async def one(conn: Conn, intended: float) -> None:
        nonlocal errors, counter
        counter += 1
        status, _ = await conn.get(path, tokens[counter % len(tokens)])
        if status != 200:
            errors += 1
        latencies.append(time.perf_counter() - intended)

    start = time.perf_counter()
    end = start + seconds
    if mode == "closed":  # `connections` workers back to back: the maximum throughput

        async def worker(conn: Conn) -> None:
            while time.perf_counter() < end:
                await one(conn, time.perf_counter())

        await asyncio.gather(*(worker(c) for c in conns))
        elapsed = time.perf_counter() - start
    else:  # open loop: request i is due at start + i/rate, whatever happened before
        rate = value
        free: asyncio.Queue[Conn] = asyncio.Queue()
        for c in conns:
            free.put_nowait(c)
        tasks: list[asyncio.Task[None]] = []

        async def dispatch(intended: float) -> None:
            conn = await free.get()
            try:
                await one(conn, intended)
            finally:
                free.put_nowait(conn)

        total = int(rate * seconds)
        for i in range(total):
            intended = start + i / rate
            delay = intended - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(dispatch(intended)))
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - start
    for c in conns:
        c.writer.close()
    return {
        "requests": len(latencies),
        "rps": len(latencies) / elapsed,
        "errors": errors,
        "p50_ms": percentile(latencies, 50) * 1000,
        "p99_ms": percentile(latencies, 99) * 1000,
        "mean_ms": statistics.fmean(latencies) * 1000 if latencies else float("nan"),
    }


def generator_proc(out: Any, *args: Any) -> None:
    out.put(uvloop.run(generate(*args)))


def run_generator(*args: Any) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    proc = ctx.Process(target=generator_proc, args=(out, *args))
    proc.start()
    result: dict[str, Any] = out.get(timeout=600)
    proc.join(30)
    return result


# ----------------------------------------------------------------------------- publish -> visible


async def publish_to_visible(
    port: int, redis_url: str, tokens: dict[str, str], data: dict[str, Any], rate: float, count: int
) -> list[float]:
    import httpx
    import redis.asyncio as aioredis

    rng = random.Random(7)
    r = aioredis.from_url(redis_url)
    latencies: list[float] = []
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:

        async def one(i: int, intended: float) -> None:
            author = rng.choice([u for u in data["user_ids"] if data["followers"][u]])
            follower = rng.choice(data["followers"][author])
            sent = time.perf_counter()
            resp = await client.post(
                "/api/v1/posts",
                json={"title": f"Bench {i}", "body": "published in the bench", "publish": True},
                headers={"Authorization": f"Bearer {tokens[author]}"},
            )
            assert resp.status_code == 201, resp.text
            pid = resp.json()["id"]
            key = f"quark:blog:home:{follower}"
            while await r.zscore(key, pid) is None:
                if time.perf_counter() - sent > 10:
                    raise RuntimeError(f"post {pid} not visible to {follower} after 10 s")
                await asyncio.sleep(0.002)
            seen = time.perf_counter()
            page = await client.get(
                "/api/v1/feed/home", params={"limit": 5}, headers={"Authorization": f"Bearer {tokens[follower]}"}
            )
            assert pid in [p["id"] for p in page.json()["items"]], "in Redis but not served"
            latencies.append(seen - sent)

        start = time.perf_counter()
        tasks = []
        for i in range(count):
            delay = start + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(i, start + i / rate)))
        await asyncio.gather(*tasks)
    await r.aclose()
    return latencies


# ----------------------------------------------------------------------------- main


async def main_async(args: argparse.Namespace) -> int:
    import asyncpg
    import httpx

    from quark_blog.app import module
    from quark_sdk.auth import SigningKeySet
    from quark_sdk.config import to_async_url
    from quark_sdk.db import upgrade_database_async
    from quark_sdk.embedded import EmbeddedInfra, free_port

    tmp = Path(tempfile.mkdtemp(prefix="quark-bench-blog-"))
    infra = EmbeddedInfra(tmp / "servers", persist_redis=False).start()
    procs: list[subprocess.Popen[bytes]] = []
    try:
        conn = await asyncpg.connect(infra.postgres.url)
        await conn.execute("CREATE DATABASE blog")
        await conn.close()
        dsn = infra.postgres.dsn("blog")
        await upgrade_database_async(module.migrations_dir, to_async_url(dsn))
        t0 = time.perf_counter()
        data = await seed(dsn, args.users, args.follows, args.posts)
        seed_s = time.perf_counter() - t0

        keys = SigningKeySet.generate()
        now = int(time.time())
        tokens = {
            u: keys.sign(
                {
                    "sub": u,
                    "username": f"user{i}",
                    "roles": ["user"],
                    "permissions": [],
                    "iss": "quark-auth",
                    "aud": "quark",
                    "iat": now,
                    "exp": now + 7200,
                    "jti": uuid.uuid4().hex,
                    "email_verified": True,  # verified accounts: writes need one (WritingUser's policy)
                }
            )
            for i, u in enumerate(data["user_ids"])
        }
        jwks_url = serve_jwks(keys.jwks())

        blog_port, base_port = free_port(), free_port()
        env = {
            **os.environ,
            **infra.env(),
            "QUARK_BLOG_DATABASE_URL": dsn,
            "QUARK_AUTH_JWKS_URL": jwks_url,
            "QUARK_HUB_JWKS_URL": jwks_url,
            "QUARK_REGISTER_WITH_HUB": "false",
            "QUARK_LOG_LEVEL": "WARNING",
            "QUARK_ENV": "dev",
            "QUARK_BLOG_WRITE_RATE_LIMIT": "1000000",
            "QUARK_BLOG_DB_POOL_SIZE": "10",
        }
        env.pop("QUARK_HUB_URL", None)
        procs.append(
            start_process(
                [
                    sys.executable,
                    "-m",
                    "quark_sdk.cli",
                    "serve",
                    "blog",
                    "--port",
                    str(blog_port),
                    "--host",
                    "127.0.0.1",
                    "--no-migrate",
                ],
                env,
                blog_port,
                tmp / "blog.log",
            )
        )
        procs.append(
            start_process(
                [sys.executable, __file__, "--serve-baseline", dsn, "--port", str(base_port)],
                env,
                base_port,
                tmp / "baseline.log",
            )
        )

        # Warm every home timeline through the service's real cold path (untimed).
        t0 = time.perf_counter()
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{blog_port}", timeout=30) as client:
            sem = asyncio.Semaphore(16)

            async def warm(token: str) -> None:
                async with sem:
                    resp = await client.get("/api/v1/feed/home", headers={"Authorization": f"Bearer {token}"})
                    assert resp.status_code == 200 and len(resp.json()["items"]) == 20, resp.text[:300]

            await asyncio.gather(*(warm(t) for t in tokens.values()))
        warm_s = time.perf_counter() - t0

        token_list: list[str | None] = list(tokens.values())
        secs, conns = args.seconds, args.connections
        home_path = "/api/v1/feed/home?limit=20"
        print(
            f"seeded {args.users} users, {args.users * args.follows} follows, {args.posts} posts in {seed_s:.1f}s; "
            f"warmed {len(tokens)} home timelines in {warm_s:.1f}s",
            flush=True,
        )
        pg_pid = int((infra.postgres.data_dir / "postmaster.pid").read_text().split()[0])
        assert infra.redis.proc is not None
        meters = {
            "base": CpuMeter({"server": procs[1].pid, "postgres": pg_pid, "valkey": infra.redis.proc.pid}),
            "home": CpuMeter({"server": procs[0].pid, "postgres": pg_pid, "valkey": infra.redis.proc.pid}),
        }
        targets = {"base": (base_port, "/rows", [None]), "home": (blog_port, home_path, token_list)}

        def phase(which: str, mode: str, rate: float, connections: int, seconds: float = secs) -> dict[str, Any]:
            port, path, toks = targets[which]
            before = meters[which].sample()
            result = run_generator(port, path, toks, mode, rate, seconds, connections)
            result["cpu_ms"] = cpu_delta(before, meters[which].sample(), result["requests"])
            return result

        # Closed loop, baseline and home interleaved round by round, so that a neighbour's load
        # hits both alike; the ratio is the median of the rounds' ratios.
        for which in ("base", "home"):  # untimed warm-up: pools at full size, statement caches filled
            phase(which, "closed", 0, conns, seconds=2.0)
        rounds: list[tuple[dict[str, Any], dict[str, Any]]] = []
        for r in range(args.rounds):
            base_r, home_r = phase("base", "closed", 0, conns), phase("home", "closed", 0, conns)
            rounds.append((base_r, home_r))
            print(
                f"round {r + 1}: baseline {base_r['rps']:.0f} req/s, home {home_r['rps']:.0f} req/s "
                f"({home_r['rps'] / base_r['rps']:.2f}x)",
                flush=True,
            )
        base_max = {"rps": statistics.median(b["rps"] for b, _ in rounds), "rounds": [b for b, _ in rounds]}
        home_max = {"rps": statistics.median(h["rps"] for _, h in rounds), "rounds": [h for _, h in rounds]}
        ratios = [h["rps"] / b["rps"] for b, h in rounds]
        base_half = phase("base", "open", base_max["rps"] / 2, conns * 2)
        home_half = phase("home", "open", home_max["rps"] / 2, conns * 2)
        pub = await publish_to_visible(blog_port, infra.redis.url, tokens, data, args.publish_rate, args.publish_count)
        load = os.getloadavg()
    finally:
        for p in procs:
            p.terminate()
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
        infra.stop()
        shutil.rmtree(tmp, ignore_errors=True)  # the seeded cluster is hundreds of MB

    def med(rows: list[dict[str, Any]], key: str, sub: str | None = None) -> float:
        return statistics.median((r[key][sub] if sub else r[key]) for r in rows)

    print(
        f"\nHome timeline page (20 posts) vs bare FastAPI+asyncpg (20 rows by primary key); {secs:.0f}s per "
        f"phase, {args.rounds} interleaved closed-loop rounds at {conns} connections (medians), then open loop at "
        f"half the max rate from the intended send time; load average at the end {load[0]:.1f} on "
        f"{os.cpu_count()} CPUs\n"
    )
    print(
        f"{'':<15} {'max req/s':>10} {'rate':>7} {'p50':>9} {'p99':>9} {'errors':>7}   "
        f"{'CPU ms/request (closed loop): server':>36} {'postgres':>9} {'valkey':>7}"
    )
    for name, mx, half in (("baseline", base_max, base_half), ("home timeline", home_max, home_half)):
        errors = sum(r["errors"] for r in mx["rounds"]) + half["errors"]
        print(
            f"{name:<15} {mx['rps']:>10.0f} {half['rps']:>7.0f} {half['p50_ms']:>7.2f}ms {half['p99_ms']:>7.2f}ms "
            f"{errors:>7}   {med(mx['rounds'], 'cpu_ms', 'server'):>36.3f} "
            f"{med(mx['rounds'], 'cpu_ms', 'postgres'):>9.3f} {med(mx['rounds'], 'cpu_ms', 'valkey'):>7.3f}"
        )
    print(
        f"\nclosed-loop latency at max (medians): baseline p50 {med(base_max['rounds'], 'p50_ms'):.1f}ms "
        f"p99 {med(base_max['rounds'], 'p99_ms'):.1f}ms; home p50 {med(home_max['rounds'], 'p50_ms'):.1f}ms "
        f"p99 {med(home_max['rounds'], 'p99_ms'):.1f}ms"
    )
    print(
        f"publish->visible in a follower's timeline ({len(pub)} posts at {args.publish_rate:g}/s, from send): "
        f"p50 {percentile(pub, 50) * 1000:.1f}ms p99 {percentile(pub, 99) * 1000:.1f}ms "
        f"max {max(pub) * 1000:.1f}ms"
    )
    ratio = statistics.median(ratios)
    cpu_base = sum(med(base_max["rounds"], "cpu_ms", k) for k in ("server", "postgres", "valkey"))
    cpu_home = sum(med(home_max["rounds"], "cpu_ms", k) for k in ("server", "postgres", "valkey"))
    p99 = home_half["p99_ms"]
    pv99 = percentile(pub, 99) * 1000
    print(
        f"\nhome/baseline throughput {ratio:.2f}x (rounds: {', '.join(f'{x:.2f}' for x in ratios)}); "
        f"CPU per request, all our processes: baseline {cpu_base:.2f} ms, home {cpu_home:.2f} ms "
        f"-> {cpu_base / cpu_home:.2f}x"
    )
    print(
        f"targets (issue 6): throughput >= 0.5x baseline -> {ratio:.2f}x ({'met' if ratio >= 0.5 else 'not met'}); "
        f"p99 < 50 ms at half its max rate -> {p99:.1f}ms ({'met' if p99 < 50 else 'not met'}); "
        f"publish->visible p99 < 100 ms -> {pv99:.1f}ms ({'met' if pv99 < 100 else 'not met'})"
    )
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--follows", type=int, default=100)
    parser.add_argument("--posts", type=int, default=20000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved closed-loop rounds (median)")
    parser.add_argument("--publish-rate", type=float, default=10.0)
    parser.add_argument("--publish-count", type=int, default=200)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--serve-baseline", metavar="DSN", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_baseline:
        baseline_main(args.serve_baseline, args.port)
        return 0
    if args.quick:
        args.users, args.follows, args.posts, args.seconds, args.publish_count = 200, 20, 4000, 3.0, 40
        args.rounds = min(args.rounds, 2)
    return uvloop.run(main_async(args))


if __name__ == "__main__":
    sys.exit(main())
