"""The embedded gateway's reach beyond its own process: it routes to module instances the hub knows.

`quark dev` serves its modules in-process; a module started beside it (`quark serve mymodule`, a new version
during `quark upgrade`) docks with the hub like any fleet instance. `RouteTable` polls the hub's routing table
(`GET /api/v1/hub/routes`, the same decisions as the Traefik config: disabled modules and retired versions left
out, weighted pools between versions), and `proxy_http` / `proxy_websocket` forward a request to the chosen
instance. A request the proxy could not deliver (connection refused: nothing was sent) is tried on another
server of the module, so a drained instance that just went away costs no failed request.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any

import httpx

log = logging.getLogger("quark.gateway")

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
                        "transfer-encoding", "upgrade", "host", "content-length"})


@dataclass
class Pool:
    version: str
    weight: int
    servers: list[str]


@dataclass
class RouteEntry:
    """One module as the hub routes it."""

    name: str
    state: str
    prefixes: list[str]
    pools: list[Pool] = field(default_factory=list)

    @property
    def enabled(self) -> bool:
        return self.state == "enabled"

    @property
    def servers(self) -> list[str]:
        return [s for p in self.pools for s in p.servers]

    def pick(self, avoid: set[str] | frozenset[str] = frozenset()) -> str | None:
        """A server by the pools' weights (then at random within the pool); None when none is left."""
        pools = [p for p in self.pools if p.weight > 0 and any(s not in avoid for s in p.servers)]
        if not pools:
            return None
        pool = random.choices(pools, weights=[p.weight for p in pools])[0]
        return random.choice([s for s in pool.servers if s not in avoid])


class RouteTable:
    """The hub's routing table, refreshed every `interval` seconds in the background."""

    def __init__(self, fetch: Callable[[], Awaitable[dict[str, Any]]], *, interval: float = 0.5) -> None:
        self._fetch = fetch
        self.interval = interval
        self.entries: dict[str, RouteEntry] | None = None  # None until the first successful fetch
        self.external: list[tuple[str, RouteEntry]] = []
        self.refreshed_at = 0.0
        self._local: set[str] = set()
        self._task: asyncio.Task[None] | None = None
        self.changed = asyncio.Event()

    def load(self, raw: dict[str, Any]) -> None:
        entries = {}
        for m in raw.get("modules", []):
            entries[m["name"]] = RouteEntry(m["name"], m.get("state", "enabled"), list(m.get("prefixes", [])),
                                            [Pool(p["version"], int(p["weight"]), list(p["servers"]))
                                             for p in m.get("pools", [])])
        self.entries = entries
        self.refreshed_at = time.monotonic()
        self.changed.set()

    def set_local(self, names: set[str]) -> None:
        """Prefixes of modules that are not in-process are routed to their instances (longest first)."""
        self._local = names
        self._rebuild()

    def _rebuild(self) -> None:
        local = self._local
        self.external = sorted(((p, e) for e in (self.entries or {}).values() if e.name not in local
                                for p in e.prefixes if p != "/"), key=lambda r: -len(r[0]))

    def route(self, path: str) -> tuple[str, RouteEntry] | None:
        for prefix, entry in self.external:
            if path == prefix or path.startswith(prefix + "/"):
                return prefix, entry
        return None

    async def refresh(self) -> None:
        self.load(await self._fetch())
        self._rebuild()

    async def _run(self) -> None:
        failures = 0
        while True:
            try:
                await self.refresh()
                failures = 0
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the hub restarting: keep the last table
                failures += 1
                log.log(logging.WARNING if failures == 5 else logging.DEBUG, "routing table not refreshed: %r", exc)
            await asyncio.sleep(self.interval)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="gateway-route-table")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None


def _forward_headers(scope: Scope) -> list[tuple[str, str]]:
    out = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope.get("headers", [])
           if k.decode("latin-1").lower() not in HOP_BY_HOP]
    client = scope.get("client")
    if client:
        out.append(("x-forwarded-for", str(client[0])))
    host = next((v.decode("latin-1") for k, v in scope.get("headers", []) if k == b"host"), None)
    if host:
        out.append(("x-forwarded-host", host))
    out.append(("x-forwarded-proto", "https" if scope.get("scheme") in ("https", "wss") else "http"))
    return out


def _target_path(scope: Scope) -> str:
    raw = scope.get("raw_path") or scope.get("path", "/").encode()
    path = raw.decode("latin-1") if isinstance(raw, bytes) else str(raw)
    qs = scope.get("query_string", b"")
    return path + ("?" + qs.decode("latin-1") if qs else "")


async def proxy_http(client: httpx.AsyncClient, entry: RouteEntry, first: str, scope: Scope, receive: Receive,
                     send: Send, *, attempts: int = 3) -> None:
    """Forward one HTTP request; a refused connection (nothing sent) is retried on another server."""
    body = bytearray()
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    headers = _forward_headers(scope)
    target: str | None = first
    tried: set[str] = set()
    last: Exception | None = None
    for _ in range(attempts):
        if target is None:
            break
        tried.add(target)
        request = client.build_request(scope["method"], target + _target_path(scope), headers=headers,
                                       content=bytes(body))
        try:
            response = await client.send(request, stream=True)
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:  # never reached the instance: safe to resend
            last = exc
            target = entry.pick(avoid=tried)
            continue
        try:
            await send({"type": "http.response.start", "status": response.status_code,
                        "headers": [(k.encode("latin-1"), v.encode("latin-1"))
                                    for k, v in response.headers.multi_items()
                                    if k.lower() not in HOP_BY_HOP - {"content-length"}]})
            async for chunk in response.aiter_raw():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
        finally:
            await response.aclose()
        return
    log.warning("no instance of %s reachable for %s (%r)", entry.name, scope.get("path"), last)
    await problem(send, 503, "unavailable", "Service temporarily unavailable",
                  f"no instance of module {entry.name} answered")


async def proxy_websocket(target: str, scope: Scope, receive: Receive, send: Send) -> None:
    """Forward a WebSocket both ways until either side closes."""
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed

    first = await receive()
    if first["type"] != "websocket.connect":
        return
    url = "ws" + target.removeprefix("http") + _target_path(scope)
    headers = [(k, v) for k, v in _forward_headers(scope)
               if k.lower() not in ("sec-websocket-key", "sec-websocket-version", "sec-websocket-extensions",
                                    "sec-websocket-protocol")]
    protocols = list(scope.get("subprotocols") or [])
    try:
        upstream = await connect(url, additional_headers=headers, subprotocols=protocols or None,
                                 open_timeout=10, max_size=None)
    except Exception as exc:
        log.info("websocket to %s failed: %r", url, exc)
        await send({"type": "websocket.close", "code": 1011})
        return
    await send({"type": "websocket.accept", "subprotocol": upstream.subprotocol})

    async def client_to_upstream() -> None:
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                await upstream.close(message.get("code", 1000))
                return
            data = message.get("text") if message.get("text") is not None else message.get("bytes")
            if data is not None:
                await upstream.send(data)

    async def upstream_to_client() -> None:
        try:
            async for data in upstream:
                if isinstance(data, str):
                    await send({"type": "websocket.send", "text": data})
                else:
                    await send({"type": "websocket.send", "bytes": data})
        except ConnectionClosed:
            pass
        code = upstream.close_code or 1000
        with contextlib.suppress(Exception):
            await send({"type": "websocket.close", "code": code})

    tasks = [asyncio.create_task(client_to_upstream()), asyncio.create_task(upstream_to_client())]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await upstream.close()


async def problem(send: Send, status: int, code: str, title: str, detail: str) -> None:
    import json

    from quark_sdk.errors import PROBLEM_CONTENT_TYPE, PROBLEM_TYPE_BASE

    raw = json.dumps({"type": PROBLEM_TYPE_BASE + code, "title": title, "status": status, "detail": detail}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", PROBLEM_CONTENT_TYPE.encode()),
                            (b"content-length", str(len(raw)).encode())]})
    await send({"type": "http.response.body", "body": raw})
