"""Auth benchmark: what token verification costs a protected endpoint, and whether login is bcrypt-bound.

Everything runs in one session against embedded PostgreSQL, Valkey and NATS servers:

* verification: a small service built with the SDK (`current_user`, TokenVerifier with the JWKS fetched
  over HTTP from the running auth service) serves the same handler protected and unprotected; requests
  go through the ASGI stack in-process (no sockets), so the ratio isolates the cost of verification.
  The raw `TokenVerifier.verify()` rate is shown too.
* login: the auth service runs as its own process (`quark serve`, uvicorn) and is driven over HTTP
  with concurrent `POST /api/v1/auth/login` requests; the baseline is raw `bcrypt.checkpw` at the same
  cost on as many threads as there are cores, measured in this process right before.

    .venv/bin/python bench/auth.py              # bcrypt cost 12 (production default), 10 s per login phase
    .venv/bin/python bench/auth.py --quick      # cost 10, shorter runs
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import asyncpg
import bcrypt
import httpx
import jwt
from fastapi import FastAPI

from quark_auth.app import module
from quark_auth.passwords import _prehash
from quark_auth.settings import AuthSettings
from quark_sdk.auth import CurrentUser, JWKSCache, TokenVerifier, install_token_verifier
from quark_sdk.config import to_async_url
from quark_sdk.db import upgrade_database
from quark_sdk.embedded import EmbeddedInfra, free_port
from quark_sdk.errors import install_error_handlers
from quark_sdk.testing import ModuleProcess, settings_env

PASSWORD = "correct horse battery staple"


async def drive(client: httpx.AsyncClient, method: str, url: str, *, total: int | None, seconds: float | None,
                concurrency: int, **kwargs: Any) -> tuple[int, float]:
    """Send requests from `concurrency` workers until `total` are done or `seconds` have passed."""
    done = 0
    start = time.perf_counter()
    deadline = start + seconds if seconds else None
    counter = iter(range(total)) if total else None

    async def worker(i: int) -> None:
        nonlocal done
        while True:
            if counter is not None and next(counter, None) is None:
                return
            if deadline is not None and time.perf_counter() >= deadline:
                return
            resp = await client.request(method, url, **kwargs)
            if resp.status_code != 200:
                raise RuntimeError(f"{method} {url}: {resp.status_code} {resp.text[:200]}")
            done += 1

    await asyncio.gather(*(worker(i) for i in range(concurrency)))
    return done, time.perf_counter() - start


def resource_app(jwks_url: str, cache_ttl: float) -> FastAPI:
    """`cache_ttl` 0 verifies every request; the modules' default (`token_cache_ttl`, 60 s) reuses a verified token."""
    app = FastAPI()
    install_error_handlers(app)
    install_token_verifier(app, TokenVerifier({"quark-auth": JWKSCache(jwks_url)}, audience="quark",
                                              cache_ttl=cache_ttl))

    @app.get("/open")
    async def open_endpoint() -> dict[str, str]:
        return {"hello": "anyone"}

    @app.get("/protected")
    async def protected(user: CurrentUser) -> dict[str, str]:
        return {"hello": user.subject}

    return app


def bcrypt_rate(cost: int, seconds: float, threads: int) -> float:
    hashed = bcrypt.hashpw(_prehash(PASSWORD), bcrypt.gensalt(cost))
    stop = time.perf_counter() + seconds
    counts = [0] * threads

    def spin(i: int) -> None:
        while time.perf_counter() < stop:
            bcrypt.checkpw(_prehash(PASSWORD), hashed)
            counts[i] += 1

    start = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(spin, range(threads)))
    return sum(counts) / (time.perf_counter() - start)


async def main_async(args: argparse.Namespace) -> int:
    tmp = Path(tempfile.mkdtemp(prefix="quark-bench-auth-"))
    infra = EmbeddedInfra(tmp, persist_redis=False).start()
    proc: ModuleProcess | None = None
    try:
        db = f"bench_auth_{uuid.uuid4().hex[:8]}"
        conn = await asyncpg.connect(infra.postgres.url)
        await conn.execute(f'CREATE DATABASE "{db}"')
        await conn.close()
        database_url = to_async_url(infra.postgres.dsn(db))
        await asyncio.to_thread(upgrade_database, module.migrations_dir, database_url)
        port = free_port()
        settings = AuthSettings.load(
            env="test", port=port, postgres_url=infra.postgres.url, database_url=database_url,
            redis_url=infra.redis.url, nats_url=infra.nats.url, data_dir=tmp / "data", hub_url=None,
            register_with_hub=False, event_namespace="bench", log_level="WARNING", json_logs=False,
            bcrypt_rounds=args.cost, login_ip_limit=10**9, register_ip_limit=10**9,
        )
        proc = ModuleProcess("quark_auth.app:module", env={**os.environ, **settings_env(settings)}, port=port)
        await asyncio.to_thread(proc.start)
        base = proc.url + "/api/v1/auth"
        cores = os.cpu_count() or 1

        async with httpx.AsyncClient(base_url=base, timeout=60,
                                     limits=httpx.Limits(max_connections=64)) as auth:
            users = [f"bench{i}" for i in range(args.concurrency)]
            for name in users:
                resp = await auth.post("/register", json={"username": name, "email": f"{name}@example.com",
                                                          "password": PASSWORD})
                resp.raise_for_status()
            token = (await auth.post("/login", json={"login": users[0], "password": PASSWORD})).json()["access_token"]

            # -- verification -------------------------------------------------------------------------
            jwks_url = base + "/.well-known/jwks.json"
            headers = {"Authorization": f"Bearer {token}"}
            cached_app = resource_app(jwks_url, AuthSettings.model_fields["token_cache_ttl"].default)
            uncached_app = resource_app(jwks_url, 0.0)
            async with (
                httpx.AsyncClient(transport=httpx.ASGITransport(app=cached_app), base_url="http://svc") as svc,
                httpx.AsyncClient(transport=httpx.ASGITransport(app=uncached_app), base_url="http://svc") as bare,
            ):
                for client in (svc, bare):
                    await drive(client, "GET", "/protected", total=200, seconds=None, concurrency=8, headers=headers)
                await drive(svc, "GET", "/open", total=200, seconds=None, concurrency=8)
                # Alternate the variants and keep each one's best round: the machine may be shared.
                open_rps = prot_rps = uncached_rps = 0.0
                for _ in range(args.rounds):
                    n, t = await drive(svc, "GET", "/open", total=args.requests, seconds=None, concurrency=8)
                    open_rps = max(open_rps, n / t)
                    n, t = await drive(svc, "GET", "/protected", total=args.requests, seconds=None, concurrency=8,
                                       headers=headers)
                    prot_rps = max(prot_rps, n / t)
                    n, t = await drive(bare, "GET", "/protected", total=args.requests, seconds=None, concurrency=8,
                                       headers=headers)
                    uncached_rps = max(uncached_rps, n / t)
            verifier = TokenVerifier({"quark-auth": JWKSCache(jwks_url)}, audience="quark")
            await verifier.verify(token)
            verify_rate = 0.0
            for _ in range(args.rounds):
                t0 = time.perf_counter()
                for _ in range(args.requests):
                    await verifier.verify(token)
                verify_rate = max(verify_rate, args.requests / (time.perf_counter() - t0))
            key = await verifier.sources["quark-auth"].get_key(jwt.get_unverified_header(token)["kid"])
            head, _, signature = token.rpartition(".")
            raw_signature, signed = base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4)), head.encode()
            raw_rate = 0.0
            for _ in range(args.rounds):
                t0 = time.perf_counter()
                for _ in range(args.requests):
                    key.key.verify(raw_signature, signed)
                raw_rate = max(raw_rate, args.requests / (time.perf_counter() - t0))

            # -- login vs raw bcrypt ---------------------------------------------------------------------
            await drive_logins(auth, users, 1.0)  # warm-up: connections, pools
            raw = login_rps = 0.0
            for _ in range(args.rounds):
                raw = max(raw, await asyncio.to_thread(bcrypt_rate, args.cost, args.seconds, cores))
                n, t = await drive_logins(auth, users, args.seconds)
                login_rps = max(login_rps, n / t)

        print(f"\nAuth benchmark ({cores} cores, bcrypt cost {args.cost}, {args.requests} requests per "
              f"verification variant, {args.seconds:.0f} s per login phase, best of {args.rounds} alternating "
              "rounds)\n")
        print(f"{'':<44} {'per second':>12}")
        print(f"{'GET /open       (no token)':<44} {open_rps:>12.0f}")
        print(f"{'GET /protected  (SDK current_user, EdDSA)':<44} {prot_rps:>12.0f}")
        print(f"{'GET /protected  (verified-token cache off)':<44} {uncached_rps:>12.0f}")
        print(f"{'TokenVerifier.verify() alone, cache off':<44} {verify_rate:>12.0f}")
        print(f"{'raw Ed25519 verify (cryptography)':<44} {raw_rate:>12.0f}")
        print(f"{f'raw bcrypt.checkpw, {cores} threads':<44} {raw:>12.1f}")
        print(f"{f'POST /login over HTTP, {args.concurrency} clients':<44} {login_rps:>12.1f}")
        print()
        print(f"protected / unprotected throughput: {prot_rps / open_rps:.2f}x "
              f"(verification adds {1e6 / prot_rps - 1e6 / open_rps:.0f} us per request; modules' 60 s cache)")
        print(f"protected, cache off / unprotected: {uncached_rps / open_rps:.2f}x "
              f"(adds {1e6 / uncached_rps - 1e6 / open_rps:.0f} us per request)")
        print(f"verify() / raw Ed25519 verify:      {verify_rate / raw_rate:.2f}x "
              f"(parse and claim checks add {1e6 / verify_rate - 1e6 / raw_rate:.0f} us)")
        print(f"login / raw bcrypt throughput:      {login_rps / raw:.2f}x "
              f"(login is bcrypt-bound when this is close to 1)")
    finally:
        if proc is not None:
            proc.stop()
        infra.stop()
    return 0


async def drive_logins(client: httpx.AsyncClient, users: list[str], seconds: float) -> tuple[int, float]:
    """Each client logs in as its own user (no lockout or account contention) until time is up."""
    done = 0
    start = time.perf_counter()
    deadline = start + seconds

    async def worker(name: str) -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            resp = await client.post("/login", json={"login": name, "password": PASSWORD})
            if resp.status_code != 200:
                raise RuntimeError(f"login: {resp.status_code} {resp.text[:200]}")
            done += 1

    await asyncio.gather(*(worker(name) for name in users))
    return done, time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cost", type=int, default=12, help="bcrypt cost for the service and the baseline")
    parser.add_argument("--requests", type=int, default=5000, help="requests per verification variant")
    parser.add_argument("--seconds", type=float, default=10.0, help="duration of each login phase")
    parser.add_argument("--concurrency", type=int, default=8, help="concurrent login clients")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds per comparison (best is kept)")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.cost, args.requests, args.seconds, args.rounds = 10, 1000, 3.0, 1
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    sys.exit(main())
