"""Web client benchmark: server-rendered pages against the same data as the API's JSON, on one station.

One `quark dev` station (every module in one process, as `make run` starts it), seeded through the public
API: a writer with 30 posts (one with an image), a reader who follows the writer, a direct chat of 40
messages between them. The reader signs in to the web client (a real browser session cookie).

Three pages, each against its JSON counterpart read with the reader's bearer token:

| page | HTML | the API's JSON page |
|---|---|---|
| home feed | `GET /` (10 posts, authors, media) | blog `/api/v1/feed/home?limit=10`; BFF `/api/v1/web/feed` |
| a post | `GET /@writer/<slug>` (post, reactions, comments) | `GET /api/v1/posts/by/writer/<slug>` |
| the chat | `GET /messages/<id>` (chat, 30 messages) | `GET /api/v1/chats/<id>/messages?limit=30` |

For each: the maximum throughput (closed loop, 8 keep-alive connections, pages/s), then latency at a
constant arrival rate (`--rate`, default 100 pages/s; open loop, measured from each request's *intended*
send time, so a stall is never hidden). The load generator runs in its own process on raw asyncio
HTTP/1.1 keep-alive connections. Then the first load: the HTML plus every stylesheet and script it
references, each gzip -9 (what a compressing front door sends), against the issue's 100 KB.

Each closed-loop phase also prints the CPU the station spent per page (`psutil`, user + system): the station's
Python process (every module and the gateway) and its other processes (PostgreSQL, Valkey, NATS).

`--only home,post,chat` measures some of the pages. `--profile` runs, for each page, one more closed-loop
phase with `py-spy record` sampling the station's Python process (a dev tool: `.venv/bin/py-spy`), writes the
collapsed stacks to `--profile-dir` (`web-<page>.txt`, for a flame graph) and prints the hottest frames.

`--lighthouse` also runs Google Lighthouse (npm `lighthouse`, installed on first use into
bench/lighthouse/node_modules, gitignored; Debian's /usr/bin/chromium through CHROME_PATH) on the three
pages with the reader's cookie, and prints the performance, accessibility, best-practices and SEO scores.

    .venv/bin/python bench/web.py                 # 8 s per phase
    .venv/bin/python bench/web.py --quick         # 3 s per phase, a smoke run
    .venv/bin/python bench/web.py --lighthouse    # and the Lighthouse audit
    .venv/bin/python bench/web.py --only post --profile   # the post page only, and where its CPU goes
    .venv/bin/python bench/web.py --only chat --rounds 5  # maxima 5 times alternated: median ratio per round
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import io
import json
import multiprocessing as mp
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "e2e"))

from stationkit import PASSWORD, Person, Station, client  # noqa: E402

LIGHTHOUSE_DIR = Path(__file__).resolve().parent / "lighthouse"
LIGHTHOUSE_VERSION = "12.8.2"
CHROMIUM = "/usr/bin/chromium"
FIRST_LOAD_BUDGET = 100 * 1024


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


# ----------------------------------------------------------------------------- load generator


class Conn:
    """One keep-alive HTTP/1.1 connection that reads Content-Length and chunked answers."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int) -> Conn:
        return cls(*await asyncio.open_connection("127.0.0.1", port))

    async def get(self, path: str, header: str) -> tuple[int, int]:
        self.writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{header}\r\n\r\n".encode())
        status = int((await self.reader.readline()).split()[1])
        length, chunked = 0, False
        while True:
            line = await self.reader.readline()
            if line in (b"\r\n", b""):
                break
            name, _, value = line.partition(b":")
            if name.lower() == b"content-length":
                length = int(value)
            elif name.lower() == b"transfer-encoding" and b"chunked" in value.lower():
                chunked = True
        if not chunked:
            return status, len(await self.reader.readexactly(length))
        size = 0
        while True:
            n = int((await self.reader.readline()).split(b";")[0], 16)
            size += len(await self.reader.readexactly(n + 2)) - 2
            if n == 0:
                return status, size


async def generate(port: int, path: str, header: str, mode: str, rate: float, seconds: float,
                   connections: int) -> dict[str, Any]:
    conns = [await Conn.open(port) for _ in range(connections)]
    latencies: list[float] = []
    errors = 0

    async def one(conn: Conn, intended: float) -> None:
        nonlocal errors
        status, _ = await conn.get(path, header)
        errors += status != 200
        latencies.append(time.perf_counter() - intended)

    start = time.perf_counter()
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
    return {"requests": len(latencies), "rps": len(latencies) / elapsed, "errors": errors,
            "p50_ms": percentile(latencies, 50) * 1000, "p99_ms": percentile(latencies, 99) * 1000,
            "mean_ms": statistics.fmean(latencies) * 1000 if latencies else float("nan")}


def _generator_proc(out: Any, *args: Any) -> None:
    out.put(asyncio.run(generate(*args)))


def run_generator(*args: Any) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    proc = ctx.Process(target=_generator_proc, args=(out, *args))
    proc.start()
    result: dict[str, Any] = out.get(timeout=900)
    proc.join(30)
    return result


# ----------------------------------------------------------------------------- CPU and profile


class CpuMeter:
    """CPU seconds (user + system) of the station's Python process and of its other processes."""

    def __init__(self, pid: int) -> None:
        import psutil

        self.main = psutil.Process(pid)

    def _procs(self) -> list[Any]:
        import psutil

        try:
            return [self.main, *self.main.children(recursive=True)]
        except psutil.Error:
            return [self.main]

    def sample(self) -> dict[int, float]:
        import psutil

        out: dict[int, float] = {}
        for proc in self._procs():
            try:
                t = proc.cpu_times()
                out[proc.pid] = t.user + t.system
            except psutil.Error:
                pass
        return out

    def settle(self, *, quiet: float = 0.15, window: float = 0.5, timeout: float = 120.0) -> tuple[float, float]:
        """Wait until the station is quiet: its processes together below `quiet` of a core over two windows
        in a row (an idle station spends ~7% of a core: heartbeats, health probes, the gateway's route
        refresh). Seeding leaves work behind (the AI's agents on every new post, feeds, notifications) that
        would otherwise be charged to the first phase measured. Returns (seconds waited, last window's load)."""
        start, calm, load = time.monotonic(), 0, 1.0
        while time.monotonic() - start < timeout and calm < 2:
            before = self.sample()
            time.sleep(window)
            load = sum(self.spent(before, self.sample())) / window
            calm = calm + 1 if load < quiet else 0
        return time.monotonic() - start, load

    def spent(self, before: dict[int, float], after: dict[int, float]) -> tuple[float, float]:
        """(station Python process, everything else in its tree) seconds between two samples."""
        main = after.get(self.main.pid, 0.0) - before.get(self.main.pid, 0.0)
        rest = sum(v - before.get(pid, 0.0) for pid, v in after.items() if pid != self.main.pid)
        return main, rest


def profile_page(pid: int, label: str, out_dir: Path, seconds: float, *gen_args: Any) -> dict[str, Any]:
    """One closed-loop phase under `py-spy record` (the station's Python process); collapsed stacks to a file."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(spy).exists():
        raise SystemExit("py-spy is not installed (make install brings it: requirements/dev.txt)")
    out_dir.mkdir(parents=True, exist_ok=True)
    stacks = out_dir / f"web-{label}.txt"
    recorder = subprocess.Popen([spy, "record", "--pid", str(pid), "--nonblocking", "--rate", "200",
                                 "--format", "raw", "--output", str(stacks), "--duration", str(int(seconds) + 1)],
                                stdout=subprocess.DEVNULL)
    time.sleep(1.0)  # py-spy attaches first
    result = run_generator(*gen_args)
    recorder.wait()
    summarize_stacks(stacks)
    return result


def summarize_stacks(path: Path, top: int = 30) -> None:
    """Collapsed py-spy stacks: the hottest frames by self time, and by inclusive time."""
    self_time: dict[str, int] = {}
    inclusive: dict[str, int] = {}
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count_s = line.rpartition(" ")
        if not count_s.isdigit():
            continue
        count = int(count_s)
        frames = stack.split(";")
        total += count
        self_time[frames[-1]] = self_time.get(frames[-1], 0) + count
        for frame in set(frames):
            inclusive[frame] = inclusive.get(frame, 0) + count
    print(f"\nprofile: {total} samples in {path}")
    print("hottest frames, self:")
    for name, n in sorted(self_time.items(), key=lambda x: -x[1])[:top]:
        print(f"  {n:>7} {100 * n / max(total, 1):5.1f}%  {name[:150]}")
    print("hottest frames, inclusive:")
    for name, n in sorted(inclusive.items(), key=lambda x: -x[1])[:top * 2]:
        print(f"  {n:>7} {100 * n / max(total, 1):5.1f}%  {name[:150]}")
    print(flush=True)


# ----------------------------------------------------------------------------- seed


def _png() -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (800, 500), (40, 90, 160)).save(buf, "PNG")
    return buf.getvalue()


async def _verified(station: Station, c: Any, name: str) -> Person:
    person = await c.register(name)
    token = await station.emailed_token(person.id)
    await c.post("/api/v1/auth/verify-email/confirm", json={"token": token}, expect=204)
    await c.login(person)
    return person


async def seed(station: Station, posts: int, messages: int) -> dict[str, Any]:
    async with client(station) as c:
        writer, reader = await _verified(station, c, "writer"), await _verified(station, c, "reader")

        async def known(p: Person) -> bool:
            return (await c.http.get(station.url(f"/api/v1/users/{p.username}"))).status_code == 200

        for p in (writer, reader):
            while not await known(p):
                await asyncio.sleep(0.2)
        await c.post(f"/api/v1/users/{writer.username}/follow", reader)
        media = (await c.post("/api/v1/media?purpose=post", writer,
                              files={"file": ("sky.png", _png(), "image/png")}, expect=201)).json()
        while (await c.get(f"/api/v1/media/{media['id']}", writer)).json()["status"] != "ready":
            await asyncio.sleep(0.2)
        slug = ""
        for i in range(posts):
            image = f"\n\n![sky](/api/v1/media/{media['id']}/variants/medium)\n" if i == posts - 1 else ""
            body = {"title": f"Notes from the north, part {i + 1}",
                    "body": f"Day {i + 1}. The *light* was **long** and the water still.{image}\n" * 3,
                    "tags": ["north", "notes"], "visibility": "public", "publish": True,
                    **({"media_ids": [media["id"]]} if image else {})}
            made = (await c.post("/api/v1/posts", writer, json=body, expect=201)).json()
            slug = made["slug"]
        chat = (await c.post("/api/v1/chats/direct", writer, json={"user_id": reader.id})).json()
        for i in range(messages):
            who = writer if i % 2 == 0 else reader
            await c.post(f"/api/v1/chats/{chat['id']}/messages", who,
                         json={"body": f"Message {i + 1}: how was the light today?"}, expect=201)
        await c.login(reader)  # a fresh access token for the whole run

        async def in_feed() -> bool:
            resp = await c.get("/api/v1/feed/home?limit=10", reader)
            return any(p["slug"] == slug for p in resp.json()["items"])

        while not await in_feed():
            await asyncio.sleep(0.2)
        return {"writer": writer, "reader": reader, "slug": slug, "chat": chat["id"]}


async def web_session(station: Station, person: Person) -> str:
    """Sign in through the pages like a browser; returns the Cookie header."""
    async with httpx.AsyncClient(base_url=station.base, follow_redirects=False, timeout=30) as http:
        page = await http.get("/login")
        token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
        assert token is not None
        resp = await http.post("/login", data={"login": person.username, "password": PASSWORD,
                                               "csrf_token": token.group(1)})
        assert resp.status_code == 303, resp.text
        return "; ".join(f"{k}={v}" for k, v in http.cookies.items())


# ----------------------------------------------------------------------------- first load, lighthouse


def first_load(base: str, path: str, cookie: str) -> dict[str, int]:
    """The page's HTML and every stylesheet and script it references, each gzip -9."""
    with httpx.Client(base_url=base, headers={"Cookie": cookie}, timeout=30) as http:
        html = http.get(path).content
        urls = re.findall(rb'<(?:script[^>]*\ssrc|link[^>]*rel="stylesheet"[^>]*\shref)="([^"]+)"', html)
        sizes = {"html": len(gzip.compress(html, 9))}
        for url in dict.fromkeys(u.decode() for u in urls):
            sizes[url.split("?")[0].rsplit("/", 1)[-1]] = len(gzip.compress(http.get(url).content, 9))
    return sizes


def lighthouse(base: str, pages: dict[str, str], cookie: str) -> dict[str, dict[str, float]] | str:
    npm = shutil.which("npm")
    if npm is None:
        return "npm is not installed"
    cli = LIGHTHOUSE_DIR / "node_modules" / ".bin" / "lighthouse"
    if not cli.exists():
        LIGHTHOUSE_DIR.mkdir(exist_ok=True)
        done = subprocess.run([npm, "install", "--prefix", str(LIGHTHOUSE_DIR), "--no-audit", "--no-fund",
                               f"lighthouse@{LIGHTHOUSE_VERSION}"], capture_output=True, text=True, timeout=900)
        if done.returncode != 0 or not cli.exists():
            return "npm install lighthouse failed (offline?): " + done.stderr[-500:]
    out: dict[str, dict[str, float]] = {}
    env = {**os.environ, "CHROME_PATH": CHROMIUM}
    with tempfile.TemporaryDirectory() as tmp:
        for name, path in pages.items():
            report = Path(tmp) / f"{name}.json"
            done = subprocess.run(
                [str(cli), base + path, "--quiet", "--output=json", f"--output-path={report}",
                 "--only-categories=performance,accessibility,best-practices,seo",
                 "--chrome-flags=--headless=new --no-sandbox --disable-gpu --disable-dev-shm-usage",
                 "--extra-headers=" + json.dumps({"Cookie": cookie}), "--max-wait-for-load=60000"],
                capture_output=True, text=True, env=env, timeout=600)
            if not report.exists():
                out[name] = {"error": float("nan")}
                print(f"lighthouse {name}: failed: {done.stderr[-400:]}")
                continue
            cats = json.loads(report.read_text())["categories"]
            out[name] = {k: round(v["score"] * 100) if v["score"] is not None else float("nan")
                         for k, v in cats.items()}
    return out


# ----------------------------------------------------------------------------- main


async def main_async(args: argparse.Namespace) -> int:
    secs = 3.0 if args.quick else args.seconds
    with tempfile.TemporaryDirectory(prefix="quark-bench-web-") as tmp:
        station = Station("embedded", Path(tmp))
        print("starting the station (quark dev) ...", flush=True)
        station.start(timeout=300)
        try:
            data = await seed(station, posts=10 if args.quick else 30, messages=40)
            reader, writer = data["reader"], data["writer"]
            cookie = await web_session(station, reader)
            page_h, api_h = f"Cookie: {cookie}", f"Authorization: Bearer {reader.access_token}"
            cases = [
                ("home feed", "/", page_h, [("blog JSON", "/api/v1/feed/home?limit=10"),
                                            ("BFF JSON", "/api/v1/web/feed?source=home&limit=10")]),
                ("post page", f"/@{writer.username}/{data['slug']}", page_h,
                 [("blog JSON", f"/api/v1/posts/by/{writer.username}/{data['slug']}")]),
                ("chat page", f"/messages/{data['chat']}", page_h,
                 [("messaging JSON", f"/api/v1/chats/{data['chat']}/messages?limit=30"),
                  # what the page itself asks messaging for: the chat, its members and the same 30 messages
                  ("page's own JSON", f"/api/v1/chats/{data['chat']}?messages=30")]),
            ]
            cases = [c for c in cases if c[0].split()[0] in args.only]
            port = station.port
            assert station.proc is not None
            meter = CpuMeter(station.proc.pid)
            waited, load = meter.settle()
            print(f"the station settled after seeding in {waited:.1f} s (load {100 * load:.0f}% of a core)", flush=True)
            tops: dict[str, list[dict[str, Any]]] = {}  # label -> one closed-loop result per round
            paced_by: dict[str, dict[str, Any]] = {}
            for name, path, header, apis in cases:
                targets = [(name + " HTML", path, header), *((f"{name} {label}", p, api_h) for label, p in apis)]
                for _label, p, h in targets:  # warm-up, untimed
                    run_generator(port, p, h, "closed", 0, 1.0, 2)
                # Maxima round by round, the page and its JSON side by side: on a machine whose speed drifts, a
                # page and its JSON measured seconds apart see the same drift, and the ratio is taken per round.
                for _round in range(args.rounds):
                    for label, p, h in targets:
                        before = meter.sample()
                        top = run_generator(port, p, h, "closed", 0, secs, 8)
                        top["cpu"] = meter.spent(before, meter.sample())
                        tops.setdefault(label, []).append(top)
                for label, p, h in targets:
                    paced = paced_by[label] = run_generator(port, p, h, "open", args.rate, secs, 32)
                    runs = tops[label]
                    top_rps = statistics.median(t["rps"] for t in runs)
                    main_ms = statistics.median(1000 * t["cpu"][0] / max(t["requests"], 1) for t in runs)
                    rest_ms = statistics.median(1000 * t["cpu"][1] / max(t["requests"], 1) for t in runs)
                    errors = sum(t["errors"] for t in runs) + paced["errors"]
                    print(f"{label:34s} max {top_rps:7.1f}/s  at {args.rate:.0f}/s: p50 {paced['p50_ms']:6.1f} ms"
                          f"  p99 {paced['p99_ms']:6.1f} ms  errors {errors}  "
                          f"CPU/page {main_ms:5.2f} ms station + {rest_ms:5.2f} ms servers", flush=True)
                if args.profile:
                    profile_page(station.proc.pid, name.split()[0], args.profile_dir, secs,
                                 port, path, header, "closed", 0, secs, 8)
            print()
            for name, _, _, apis in cases:
                html_runs, html_paced = tops[name + " HTML"], paced_by[name + " HTML"]
                for label, _ in apis:
                    ratios = [h["rps"] / a["rps"] for h, a in zip(html_runs, tops[f"{name} {label}"], strict=True)]
                    each = f" (rounds: {', '.join(f'{r:.2f}' for r in ratios)})" if len(ratios) > 1 else ""
                    print(f"{name}: HTML/{label} throughput {statistics.median(ratios):.2f}x{each} "
                          f"(target >= 0.5x); HTML p99 at {args.rate:.0f}/s {html_paced['p99_ms']:.1f} ms "
                          f"(target < 50 ms)")
            print()
            pages = {name: path for name, path, _, _ in cases}
            for name, path in pages.items():
                sizes = first_load(station.base, path, cookie)
                total = sum(sizes.values())
                parts = ", ".join(f"{k} {v / 1024:.1f}" for k, v in sizes.items())
                print(f"first load {name}: {total / 1024:.1f} KB gzip -9 ({parts}) — budget "
                      f"{FIRST_LOAD_BUDGET // 1024} KB: {'ok' if total <= FIRST_LOAD_BUDGET else 'OVER'}")
            if args.lighthouse:
                print("\nlighthouse (Debian chromium, headless):", flush=True)
                scores = lighthouse(station.base, pages, cookie)
                if isinstance(scores, str):
                    print("  not run:", scores)
                else:
                    for name, cats in scores.items():
                        print(f"  {name:10s} " + "  ".join(f"{k} {v}" for k, v in cats.items()))
        finally:
            station.stop()
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=8.0, help="length of each phase")
    parser.add_argument("--rate", type=float, default=100.0, help="constant arrival rate, pages/s")
    parser.add_argument("--quick", action="store_true", help="3 s phases and a smaller seed")
    parser.add_argument("--rounds", type=int, default=1,
                        help="closed-loop maxima this many times, page and JSON alternated; medians, ratio per round")
    parser.add_argument("--lighthouse", action="store_true", help="also run the Lighthouse audit")
    parser.add_argument("--only", type=_pages, default=PAGES, metavar="PAGES",
                        help="comma-separated pages to measure: " + ",".join(PAGES))
    parser.add_argument("--profile", action="store_true",
                        help="also profile each page's closed loop with py-spy (the station's Python process)")
    parser.add_argument("--profile-dir", type=Path, default=Path("bench-profiles"),
                        help="where the collapsed stacks go")
    return asyncio.run(main_async(parser.parse_args()))


PAGES = ("home", "post", "chat")


def _pages(value: str) -> tuple[str, ...]:
    chosen = tuple(p.strip() for p in value.split(",") if p.strip())
    unknown = [p for p in chosen if p not in PAGES]
    if unknown or not chosen:
        raise argparse.ArgumentTypeError(f"pages are {', '.join(PAGES)}; not {', '.join(unknown) or value!r}")
    return chosen


if __name__ == "__main__":
    sys.exit(main())
