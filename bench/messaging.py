"""Messaging benchmark: the messaging service's WebSocket delivery against a bare `websockets` server.

Both servers run as their own process (the messaging service under `quark serve`, i.e. uvicorn +
uvloop, on embedded PostgreSQL, Valkey and NATS; the baseline is a plain `websockets` server that
only forwards frames: no authentication, no storage, no NATS). The clients run in this process,
the same client code against both, one after the other in the same run:

* **connections** — N concurrent WebSocket clients (default 1,000) stay connected throughout;
* **direct messages** — senders send DMs at a constant offered rate (default 500/s) spread over
  N/2 pairs; latency = from the sender's `send` call to the recipient's frame (p50/p99), measured
  after a warm-up of `--warmup` seconds at the same rate whose figures are printed apart;
* **group fan-out** — one member of a G-member group (default 500) sends M messages; latency of
  every delivery (p50/p99) and of the last recipient of each message.

The messaging service does everything a real message costs: token-authenticated sockets, the
membership/block checks and per-conversation numbering in PostgreSQL, the outbox row of
`quark.message.sent`, the per-user rate limit in Valkey, the NATS round trip that gives
cross-instance delivery, presence lookups for offline notifications, and the bounded per-connection
send queues. The ratio says what that costs against a server that does none of it.

    .venv/bin/python bench/messaging.py                    # 1,000 clients, 500 DM/s for 10 s, 500-member group
    .venv/bin/python bench/messaging.py --quick            # 200 clients, 200 DM/s for 3 s, 100-member group
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import uvicorn
import uvloop
import websockets
from fastapi import FastAPI

from quark_sdk.auth import SigningKeySet
from quark_sdk.config import to_async_url
from quark_sdk.db import upgrade_database
from quark_sdk.embedded import EmbeddedInfra, free_port
from quark_sdk.testing import ModuleProcess, settings_env

ROOT = Path(__file__).resolve().parent.parent


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


# ----------------------------------------------------------------------------- the baseline server


async def baseline_server(port: int) -> None:
    """A bare websockets server: `{"to": id}` frames go to that client, `{"group": true}` ones to every
    client that joined the group (websockets.broadcast). Connections say who they are in the URL."""
    from websockets.asyncio.server import broadcast, serve

    clients: dict[str, Any] = {}
    group: set[Any] = set()

    async def handler(ws: Any) -> None:
        cid = ws.request.path.rsplit("/", 1)[-1]
        clients[cid] = ws
        try:
            async for raw in ws:
                frame = json.loads(raw)
                if frame.get("join"):
                    group.add(ws)
                elif frame.get("group"):
                    broadcast(group, raw)
                else:
                    target = clients.get(frame["to"])
                    if target is not None:
                        await target.send(raw)
        except websockets.ConnectionClosed:
            pass
        finally:
            clients.pop(cid, None)
            group.discard(ws)

    async with serve(handler, "127.0.0.1", port, compression=None, max_queue=None, ping_interval=None):
        await asyncio.Future()


def run_baseline(port: int) -> None:
    uvloop.run(baseline_server(port))


# ----------------------------------------------------------------------------- clients


@dataclass
class Stats:
    dm: list[float] = field(default_factory=list)
    group: list[float] = field(default_factory=list)
    group_last: dict[str, float] = field(default_factory=dict)
    errors: int = 0
    closed: int = 0
    error_kinds: Counter[str] = field(default_factory=Counter)


class Peer:
    """One client connection; it timestamps what it receives (the body carries the send time)."""

    def __init__(self, ws: Any, stats: Stats, quark: bool, me: str | None) -> None:
        self.ws = ws
        self.me = me
        self.stats = stats
        self.quark = quark
        self.task = asyncio.create_task(self.read())

    async def read(self) -> None:
        stats = self.stats
        try:
            async for raw in self.ws:
                now = time.perf_counter()
                frame = json.loads(raw)
                if self.quark:
                    kind = frame.get("type")
                    if kind != "message":
                        if kind == "ping":  # as the protocol asks: stay under the idle timeout
                            await self.ws.send('{"type":"pong"}')
                        elif kind == "error":
                            stats.errors += 1
                            stats.error_kinds[f"{frame.get('status')} {frame.get('detail')}"] += 1
                        continue
                    if frame["message"]["sender_id"] == self.me:
                        continue  # the sender's own copy
                    body = frame["message"]["body"]
                else:
                    body = frame["body"]
                kind, t0, tag = body.split("|")
                latency = now - float(t0)
                if kind == "dm":
                    stats.dm.append(latency)
                else:
                    stats.group.append(latency)
                    stats.group_last[tag] = max(stats.group_last.get(tag, 0.0), latency)
        except websockets.ConnectionClosed:
            pass


async def paced(rate: float, count: int, send: Any, stats: Stats) -> float:
    """Call send(k) for k in range(count) at `rate` per second; returns the achieved rate."""
    start = time.perf_counter()
    for k in range(count):
        due = start + k / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        try:
            await send(k)
        except websockets.ConnectionClosed:
            stats.closed += 1
    return count / (time.perf_counter() - start)


async def settle(stats: Stats, expected_dm: int, expected_group: int, timeout: float = 60) -> None:
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        if len(stats.dm) >= expected_dm and len(stats.group) >= expected_group:
            return
        await asyncio.sleep(0.05)


@dataclass
class Result:
    name: str
    connected: int
    connect_s: float
    dm_rate: float
    dm: list[float]
    dm_expected: int
    group: list[float]
    group_expected: int
    group_last: list[float]
    errors: int
    closed: int
    error_kinds: dict[str, int]
    warmup_dm: list[float]


Url = tuple[str, list[str] | None, str | None]  # url, subprotocols, user id


async def connect_all(urls: list[Url], stats: Stats, quark: bool) -> tuple[list[Peer], float]:
    sem = asyncio.Semaphore(50)
    t0 = time.perf_counter()

    async def one(url: str, protocols: list[str] | None, me: str | None) -> Peer:
        async with sem:
            ws = await websockets.connect(
                url,
                subprotocols=protocols,
                compression=None,  # type: ignore[arg-type]
                open_timeout=60,
                ping_interval=None,
                max_queue=None,
            )
            return Peer(ws, stats, quark, me)

    peers = await asyncio.gather(*(one(u, p, me) for u, p, me in urls))
    return list(peers), time.perf_counter() - t0


async def run_clients(
    name: str, *, quark: bool, urls: list[Url], dm_send: Any, group_send: Any, args: argparse.Namespace
) -> Result:
    stats = Stats()
    peers, connect_s = await connect_all(urls, stats, quark)
    await asyncio.sleep(1.0)  # let the server finish per-connection setup (presence, ready frames)
    # Warm-up at the same rate, measured but reported apart: the first message of each conversation
    # meets cold caches (each pooled connection prepares its statements, the token cache fills).
    warm_count = int(args.rate * args.warmup)
    await paced(args.rate, warm_count, lambda k: dm_send(peers, k), stats)
    await settle(stats, warm_count, 0)
    cold, stats.dm = stats.dm, []
    dm_count = int(args.rate * args.duration)
    achieved = await paced(args.rate, dm_count, lambda k: dm_send(peers, k + warm_count), stats)
    await settle(stats, dm_count, 0)
    group_expected = args.group_messages * (args.group - 1)
    await paced(args.group_rate, args.group_messages, lambda k: group_send(peers, k), stats)
    await settle(stats, dm_count, group_expected)
    for p in peers:
        with contextlib.suppress(Exception):
            await p.ws.close()
    return Result(
        name,
        len(peers),
        connect_s,
        achieved,
        stats.dm,
        dm_count,
        stats.group,
        group_expected,
        list(stats.group_last.values()),
        stats.errors,
        stats.closed,
        dict(stats.error_kinds),
        cold,
    )


# ----------------------------------------------------------------------------- quark


async def quark_run(args: argparse.Namespace, infra: EmbeddedInfra, tmp: Path) -> Result:
    from quark_messaging.app import module

    keys = SigningKeySet.generate()
    jwks_app = FastAPI()

    @jwks_app.get("/jwks.json")
    async def jwks() -> dict[str, Any]:
        return keys.jwks()

    jwks_port = free_port()
    jwks_server = uvicorn.Server(
        uvicorn.Config(jwks_app, host="127.0.0.1", port=jwks_port, log_level="warning", lifespan="off")
    )
    jwks_task = asyncio.create_task(jwks_server.serve())

    pg = infra.postgres.url
    import asyncpg

    conn = await asyncpg.connect(pg.replace("postgresql+asyncpg://", "postgresql://"))
    await conn.execute('DROP DATABASE IF EXISTS "bench_messaging" WITH (FORCE)')
    await conn.execute('CREATE DATABASE "bench_messaging"')
    await conn.close()
    db_url = to_async_url(pg.rsplit("/", 1)[0] + "/bench_messaging")
    await asyncio.to_thread(upgrade_database, module.migrations_dir, db_url)
    port = free_port()
    settings = module.settings_cls.load(
        env="prod",
        port=port,
        host="127.0.0.1",
        postgres_url=pg,
        database_url=db_url,
        redis_url=infra.redis.url,
        nats_url=infra.nats.url,
        event_namespace="bench",
        hub_url=None,
        register_with_hub=False,
        auth_jwks_url=f"http://127.0.0.1:{jwks_port}/jwks.json",
        hub_jwks_url=f"http://127.0.0.1:{jwks_port}/jwks.json",
        log_level="WARNING",
        json_logs=False,
        message_rate_limit=10_000_000,
        write_rate_limit=10_000_000,
        max_invite_batch=10_000,
        max_group_members=10_000,
        ws_send_queue=4096,
        data_dir=str(tmp),
        db_pool_size=args.pool,
    )
    proc = ModuleProcess("quark_messaging.app:module", env={**os.environ, **settings_env(settings)}, port=port)
    await asyncio.to_thread(proc.start)
    try:
        now = int(time.time())
        users = [str(uuid.uuid4()) for _ in range(args.clients)]
        tokens = [
            keys.sign(
                {
                    "sub": u,
                    "username": f"u{i}",
                    "roles": ["user"],
                    "iss": "quark-auth",
                    "aud": "quark",
                    "iat": now,
                    "exp": now + 3600,
                    "email_verified": True,  # the station's policy: only verified accounts message
                }
            )
            for i, u in enumerate(users)
        ]
        base = f"http://127.0.0.1:{port}"
        pairs = args.clients // 2
        dm_chats: list[str] = []
        async with httpx.AsyncClient(base_url=base, timeout=60) as client:
            sem = asyncio.Semaphore(20)

            async def open_dm(i: int) -> str:
                async with sem:
                    r = await client.post(
                        "/api/v1/chats/direct",
                        json={"user_id": users[pairs + i]},
                        headers={"Authorization": f"Bearer {tokens[i]}"},
                    )
                    r.raise_for_status()
                    return str(r.json()["id"])

            dm_chats = list(await asyncio.gather(*(open_dm(i) for i in range(pairs))))
            r = await client.post(
                "/api/v1/chats",
                json={"kind": "group", "title": "bench", "member_ids": users[1 : args.group]},
                headers={"Authorization": f"Bearer {tokens[0]}"},
            )
            r.raise_for_status()
            group_id = r.json()["id"]
        ws_url = f"ws://127.0.0.1:{port}/api/v1/messages/ws"
        urls: list[Url] = [(ws_url, ["quark.v1", f"bearer.{t}"], u) for t, u in zip(tokens, users, strict=True)]

        async def dm_send(peers: list[Peer], k: int) -> None:
            i = k % pairs
            await peers[i].ws.send(
                json.dumps({"type": "send", "conversation_id": dm_chats[i], "body": f"dm|{time.perf_counter()}|{k}"})
            )

        async def group_send(peers: list[Peer], k: int) -> None:
            await peers[0].ws.send(
                json.dumps({"type": "send", "conversation_id": group_id, "body": f"group|{time.perf_counter()}|{k}"})
            )

        return await run_clients(
            "quark messaging", quark=True, urls=urls, dm_send=dm_send, group_send=group_send, args=args
        )
    finally:
        proc.stop()
        jwks_server.should_exit = True
        with contextlib.suppress(Exception):
            await asyncio.wait_for(jwks_task, 5)


# ----------------------------------------------------------------------------- baseline


async def baseline_run(args: argparse.Namespace) -> Result:
    import multiprocessing as mp

    port = free_port()
    proc = mp.get_context("spawn").Process(target=run_baseline, args=(port,), daemon=True)
    proc.start()
    try:
        for _ in range(200):
            with contextlib.suppress(OSError):
                _, w = await asyncio.open_connection("127.0.0.1", port)
                w.close()
                break
            await asyncio.sleep(0.05)
        pairs = args.clients // 2
        urls: list[Url] = [(f"ws://127.0.0.1:{port}/c/{i}", None, None) for i in range(args.clients)]

        async def dm_send(peers: list[Peer], k: int) -> None:
            i = k % pairs
            await peers[i].ws.send(json.dumps({"to": str(pairs + i), "body": f"dm|{time.perf_counter()}|{k}"}))

        joined = False

        async def group_send(peers: list[Peer], k: int) -> None:
            nonlocal joined
            if not joined:
                for p in peers[1 : args.group]:
                    await p.ws.send(json.dumps({"join": True}))
                await asyncio.sleep(0.5)
                joined = True
            await peers[0].ws.send(json.dumps({"group": True, "body": f"group|{time.perf_counter()}|{k}"}))

        return await run_clients(
            "bare websockets", quark=False, urls=urls, dm_send=dm_send, group_send=group_send, args=args
        )
    finally:
        proc.terminate()
        proc.join(5)


# ----------------------------------------------------------------------------- report


def ms(v: float) -> str:
    return f"{v * 1000:8.2f}ms"


def report(results: list[Result], args: argparse.Namespace) -> None:
    print(
        f"\n{args.clients} clients, DMs offered at {args.rate:g}/s for {args.duration:g}s over {args.clients // 2} "
        f"pairs, {args.group}-member group x {args.group_messages} messages at {args.group_rate:g}/s"
    )
    print(
        f"{'':18}{'connected':>10}{'connect':>9}{'DM/s':>8}{'DM got':>12}{'DM p50':>10}{'DM p99':>10}"
        f"{'fan p50':>10}{'fan p99':>10}{'last p50':>10}{'last max':>10}"
    )
    for r in results:
        print(
            f"{r.name:18}{r.connected:>10}{r.connect_s:>8.1f}s{r.dm_rate:>8.0f}{len(r.dm):>6}/{r.dm_expected:<5}"
            f"{ms(percentile(r.dm, 50)):>10}{ms(percentile(r.dm, 99)):>10}{ms(percentile(r.group, 50)):>10}"
            f"{ms(percentile(r.group, 99)):>10}{ms(percentile(r.group_last, 50)):>10}"
            f"{ms(max(r.group_last) if r.group_last else float('nan')):>10}"
        )
        if r.errors or r.closed:
            print(f"  {r.name}: {r.errors} error frames {r.error_kinds}, {r.closed} sends on closed connections")
        if len(r.group) < r.group_expected:
            print(f"  {r.name}: fan-out delivered {len(r.group)}/{r.group_expected}")
        if r.warmup_dm:
            print(f"  {r.name}: warm-up ({args.warmup:g}s at the same rate, not in the figures above): "
                  f"{len(r.warmup_dm)} DMs, p50 {ms(percentile(r.warmup_dm, 50)).strip()}, "
                  f"p99 {ms(percentile(r.warmup_dm, 99)).strip()}")
    if len(results) == 2:
        q, b = results
        print()
        for label, qv, bv in [
            ("DM p50", percentile(q.dm, 50), percentile(b.dm, 50)),
            ("DM p99", percentile(q.dm, 99), percentile(b.dm, 99)),
            ("fan-out p50", percentile(q.group, 50), percentile(b.group, 50)),
            ("fan-out p99", percentile(q.group, 99), percentile(b.group, 99)),
            ("fan-out last p50", percentile(q.group_last, 50), percentile(b.group_last, 50)),
        ]:
            print(f"{label:18} quark/bare = {qv / bv:6.1f}x")
        target = "met" if percentile(q.dm, 99) < 0.050 else "NOT met"
        print(f"target DM p99 < 50 ms at {args.rate:g}/s: {target} ({ms(percentile(q.dm, 99)).strip()})")


async def main(args: argparse.Namespace) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="quark-bench-msg-"))
    infra = EmbeddedInfra(tmp, persist_redis=False).start()
    try:
        results = [await quark_run(args, infra, tmp), await baseline_run(args)]
        report(results, args)
    finally:
        infra.stop()


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clients", type=int, default=1000)
    p.add_argument("--rate", type=float, default=500.0, help="DMs per second offered")
    p.add_argument("--duration", type=float, default=10.0)
    p.add_argument("--warmup", type=float, default=2.0, help="seconds of DMs at the same rate before measuring")
    p.add_argument("--group", type=int, default=500)
    p.add_argument("--group-messages", type=int, default=20)
    p.add_argument("--group-rate", type=float, default=4.0)
    p.add_argument("--pool", type=int, default=20, help="database pool of the messaging process")
    p.add_argument("--quick", action="store_true")
    args = p.parse_args()
    if args.quick:
        args.clients, args.rate, args.duration, args.group, args.group_messages = 200, 200.0, 3.0, 100, 10
        args.warmup = 1.0
    args.group = min(args.group, args.clients)
    return args


if __name__ == "__main__":
    sys.setrecursionlimit(10_000)
    uvloop.run(main(parse_args()))
