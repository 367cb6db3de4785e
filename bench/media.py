"""Media benchmark: uploads of a 2 MP JPEG end to end (stored + variants ready) against Pillow alone.

One run, one set of embedded servers (PostgreSQL, Valkey, NATS from the wheels):

1. Baseline, in this process: Pillow alone doing the same work per image — decode, EXIF orientation,
   WebP thumb 320 / medium 1280 / original at the service's settings — sequentially, then with as many
   threads as the service has processing workers.
2. The media service (`quark serve media`, uvicorn, own process, local storage driver in a temp dir)
   with a real EdDSA user token: each image is POSTed as multipart and polled (GET metadata, every
   5 ms) until `ready`. Sequential (one at a time: time per image) and concurrent (N in flight:
   uploads/s).
3. While the concurrent phase runs, GET /health is sent every 10 ms and its latency recorded
   (is the API responsive while images are being processed?).

    .venv/bin/python bench/media.py            # 30 images per phase
    .venv/bin/python bench/media.py --quick    # 8 images per phase, for a smoke run
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import uvloop
from PIL import Image, ImageOps


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def make_jpeg(seed: int) -> bytes:
    """A 2 MP (1732x1155) photo-like JPEG with EXIF (orientation + GPS), different per seed."""
    w, h = 1732, 1155
    base = Image.linear_gradient("L").resize((w, h))
    noise = Image.effect_noise((w, h), 40 + seed % 20)
    img = Image.merge("RGB", (base, noise, base.transpose(Image.Transpose.FLIP_LEFT_RIGHT)))
    exif = Image.Exif()
    exif[0x0112] = 1
    exif[0x8825] = {1: "N", 2: (52.0, 31.0, float(seed % 60)), 3: "E", 4: (13.0, 24.0, 17.0)}
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=88, exif=exif.tobytes())
    return buf.getvalue()


def pillow_only(data: bytes, thumb: int = 320, medium: int = 1280, quality: int = 80, method: int = 4) -> None:
    """What the service's processing must do per image, with nothing else around it."""
    with Image.open(io.BytesIO(data)) as src:
        img = ImageOps.exif_transpose(src).convert("RGB")
    for box in (None, medium, thumb):
        out = img
        if box is not None and max(img.size) > box:
            out = img.copy()
            out.thumbnail((box, box), Image.Resampling.LANCZOS, reducing_gap=3.0)
            img = out
        buf = io.BytesIO()
        out.save(buf, "WEBP", quality=quality, method=method)


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


def start_process(cmd: list[str], env: dict[str, str], port: int, log: Path) -> subprocess.Popen[bytes]:
    import httpx

    out = open(log, "ab")  # noqa: SIM115 - kept open for the child's lifetime
    proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{cmd} exited: {log.read_text()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{cmd} not up: {log.read_text()[-2000:]}")


POLL_S = 0.005


async def upload_until_ready(client: Any, data: bytes, headers: dict[str, str]) -> float:
    t0 = time.perf_counter()
    resp = await client.post("/api/v1/media", files={"file": ("p.jpg", data, "image/jpeg")}, headers=headers)
    assert resp.status_code == 201, resp.text[:300]
    media_id = resp.json()["id"]
    while True:
        body = (await client.get(f"/api/v1/media/{media_id}", headers=headers)).json()
        if body["status"] == "ready":
            return time.perf_counter() - t0
        assert body["status"] in ("uploaded", "processing"), body
        await asyncio.sleep(POLL_S)


async def main_async(args: argparse.Namespace) -> int:
    import asyncpg
    import httpx

    from quark_sdk.auth import SigningKeySet
    from quark_sdk.embedded import EmbeddedInfra, free_port

    n = 8 if args.quick else args.images
    workers = args.workers
    images = [make_jpeg(i) for i in range(n)]
    print(f"{n} images of {len(images[0]) / 1e6:.2f} MB (1732x1155, 2.0 MP), {workers} processing workers", flush=True)

    # -- baseline: Pillow alone
    pillow_only(images[0])  # warm the codecs
    t0 = time.perf_counter()
    for data in images:
        pillow_only(data)
    pil_seq = (time.perf_counter() - t0) / n
    with ThreadPoolExecutor(workers) as pool:
        t0 = time.perf_counter()
        list(pool.map(pillow_only, images))
        pil_par = n / (time.perf_counter() - t0)

    tmp = Path(tempfile.mkdtemp(prefix="quark-bench-media-"))
    infra = EmbeddedInfra(tmp / "servers", persist_redis=False).start()
    proc: subprocess.Popen[bytes] | None = None
    try:
        conn = await asyncpg.connect(infra.postgres.url)
        await conn.execute("CREATE DATABASE media")
        await conn.close()
        keys = SigningKeySet.generate()
        now = int(time.time())
        uid = str(uuid.uuid4())
        token = keys.sign(
            {
                "sub": uid,
                "username": "bench",
                "roles": ["user"],
                "permissions": [],
                "iss": "quark-auth",
                "aud": "quark",
                "iat": now,
                "exp": now + 7200,
                "jti": uuid.uuid4().hex,
                "email_verified": True,  # unverified accounts may not upload (station policy)
            }
        )
        headers = {"Authorization": f"Bearer {token}"}
        jwks_url = serve_jwks(keys.jwks())
        port = free_port()
        env = {
            **os.environ,
            **infra.env(),
            "QUARK_MEDIA_DATABASE_URL": infra.postgres.dsn("media"),
            "QUARK_AUTH_JWKS_URL": jwks_url,
            "QUARK_HUB_JWKS_URL": jwks_url,
            "QUARK_REGISTER_WITH_HUB": "false",
            "QUARK_LOG_LEVEL": "WARNING",
            "QUARK_ENV": "dev",
            "QUARK_MEDIA_STORAGE_URL": (tmp / "store").as_uri(),
            "QUARK_MEDIA_PROCESSING_WORKERS": str(workers),
            "QUARK_MEDIA_QUOTA_MAX_COUNT": "0",
            "QUARK_MEDIA_QUOTA_MAX_BYTES": "0",
            "QUARK_MEDIA_UPLOAD_RATE_LIMIT": "0",
        }
        env.pop("QUARK_HUB_URL", None)
        proc = start_process(
            [sys.executable, "-m", "quark_sdk.cli", "serve", "media", "--port", str(port), "--host", "127.0.0.1"],
            env,
            port,
            tmp / "media.log",
        )
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
            await upload_until_ready(client, images[0], headers)  # warm-up
            seq = [await upload_until_ready(client, data, headers) for data in images]
            svc_seq = statistics.mean(seq)

            health: list[float] = []
            stop = asyncio.Event()

            async def probe() -> None:
                async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as hc:
                    while not stop.is_set():
                        t = time.perf_counter()
                        resp = await hc.get("/health")
                        health.append((time.perf_counter() - t) * 1000)
                        assert resp.status_code == 200
                        await asyncio.sleep(0.01)

            prober = asyncio.create_task(probe())
            sem = asyncio.Semaphore(args.concurrency)

            async def one(data: bytes) -> float:
                async with sem:
                    return await upload_until_ready(client, data, headers)

            t0 = time.perf_counter()
            await asyncio.gather(*(one(d) for d in images))
            svc_par = n / (time.perf_counter() - t0)
            stop.set()
            await prober
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(10)
        infra.stop()

    print()
    print(f"{'':28}{'ms/image':>10}{'images/s':>10}")
    print(f"{'pillow alone, sequential':28}{pil_seq * 1000:10.1f}{1 / pil_seq:10.2f}")
    print(f"{'service, sequential':28}{svc_seq * 1000:10.1f}{1 / svc_seq:10.2f}")
    print(f"{f'pillow alone, {workers} threads':28}{'':>10}{pil_par:10.2f}")
    print(f"{f'service, {args.concurrency} in flight':28}{'':>10}{svc_par:10.2f}")
    print()
    print(
        f"service vs pillow: time per image {svc_seq / pil_seq:.2f}x (target <= 1.5x), "
        f"throughput {svc_par / pil_par:.2f}x"
    )
    print(
        f"GET /health during the concurrent phase ({len(health)} probes): "
        f"p50 {percentile(health, 50):.1f} ms, p99 {percentile(health, 99):.1f} ms (target p99 < 20 ms)"
    )
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=30)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--poll-ms", type=float, default=5.0, help="status polling interval per upload")
    args = parser.parse_args()
    global POLL_S
    POLL_S = args.poll_ms / 1000
    return uvloop.run(main_async(args))


if __name__ == "__main__":
    sys.exit(main())
