"""The embedded topology's gateway: one ASGI app that routes to every module by path prefix.

It plays Traefik's part in `quark dev`: the same public prefixes (DESIGN §3),
one port. It also runs every module's lifespan (in order, hub first) and
aggregates `/health`, `/health/ready` and `/metrics`; `/health/<module>` answers
for one module and `/openapi/<module>.json` serves its OpenAPI document.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

import httpx
from fastapi import FastAPI

from quark_sdk import gateway_proxy, telemetry
from quark_sdk.app import ServiceContext
from quark_sdk.errors import PROBLEM_CONTENT_TYPE, PROBLEM_TYPE_BASE
from quark_sdk.gateway_proxy import RouteTable

CATCH_ALL = "/"
Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


@dataclass
class MountedModule:
    name: str
    app: FastAPI
    prefixes: tuple[str, ...]

    @property
    def ctx(self) -> ServiceContext:
        ctx: ServiceContext = self.app.state.quark
        return ctx


class EmbeddedGateway:
    def __init__(self, modules: list[MountedModule], *, routes: RouteTable | None = None,
                 local_url: str | None = None) -> None:
        self.modules = {m.name: m for m in modules}
        # With the hub's routing table (gateway_proxy): disabled modules get no routes, and prefixes served by
        # instances outside this process (a module started beside it, a new version) are proxied to them.
        self.routes = routes
        self.local_url = local_url
        self._client: httpx.AsyncClient | None = None
        if routes is not None:
            routes.set_local(set(self.modules))
        # The same rule as the hub's Traefik routers: whole segments, longest prefix first, and "/" only as
        # the catch-all, consulted after every prefix and after the gateway's own paths (/health, /metrics...).
        self._routes = sorted(((p, m) for m in modules for p in m.prefixes if p != CATCH_ALL),
                              key=lambda r: -len(r[0]))
        self._catch_all = next((m for m in modules if CATCH_ALL in m.prefixes), None)
        self._stack: contextlib.AsyncExitStack | None = None

    def route(self, path: str) -> MountedModule | None:
        """The module serving `path` by its prefixes (None: the gateway's own paths, the catch-all or a 404)."""
        for prefix, module in self._routes:
            if path == prefix or path.startswith(prefix + "/"):
                return module
        return None

    def _own_path(self, path: str) -> bool:
        return path in ("/metrics", "/health") or path.startswith(("/health/", "/openapi/", "/operator/"))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        path: str = scope.get("path", "")
        module = self.route(path)
        routed = self.routes is not None and self.routes.entries is not None and scope["type"] in ("http", "websocket")
        if routed and await self._dispatch(module, path, scope, receive, send):
            return
        if module is None and self._catch_all is not None and not self._own_path(path):
            module = self._catch_all
        if module is not None:
            await module.app(scope, receive, send)
            return
        if scope["type"] != "http":
            await send({"type": "websocket.close", "code": 4404})
            return
        if path == "/metrics":
            resp = telemetry.metrics_response()
            await resp(scope, receive, send)
            return
        if path == "/health":
            await self._json(send, 200, {
                "status": "ok", "modules": {n: "ok" for n in self.modules},
            })
            return
        if path == "/health/ready":
            results = await asyncio.gather(*(m.ctx.readiness() for m in self.modules.values()))
            checks = dict(zip(self.modules, results, strict=True))
            ok = all(v == "ok" for c in checks.values() for v in c.values())
            await self._json(send, 200 if ok else 503, {"status": "ok" if ok else "degraded", "modules": checks})
            return
        if path.startswith("/health/"):
            name = path.removeprefix("/health/").removesuffix("/ready")
            mod = self.modules.get(name)
            if mod is not None:
                module_checks = await mod.ctx.readiness()
                ok = all(v == "ok" for v in module_checks.values())
                await self._json(send, 200 if ok else 503,
                                 {"status": "ok" if ok else "degraded", "module": name, "checks": module_checks})
                return
        if path.startswith("/operator/"):  # /operator/<module>/...: that module's operator endpoints
            mod = self.modules.get(path.split("/")[2])
            if mod is not None:
                await mod.app(scope, receive, send)
                return
        if path.startswith("/openapi/") and path.endswith(".json"):
            mod = self.modules.get(path.removeprefix("/openapi/").removesuffix(".json"))
            if mod is not None:
                await self._json(send, 200, mod.app.openapi())
                return
        if path == "/":
            await self._json(send, 200, {
                "name": "Quark", "modules": {
                    n: {"prefixes": list(m.prefixes), "openapi": f"/openapi/{n}.json", "health": f"/health/{n}"}
                    for n, m in self.modules.items()
                },
            })
            return
        await self._json(send, 404, {
            "type": PROBLEM_TYPE_BASE + "not-found", "title": "Not found", "status": 404,
            "detail": f"no module serves {path}",
        }, content_type=PROBLEM_CONTENT_TYPE)

    async def _dispatch(self, module: MountedModule | None, path: str, scope: Scope, receive: Receive,
                        send: Send) -> bool:
        """Route by the hub's table; False: serve it as before (in-process, catch-all, own paths, 404)."""
        assert self.routes is not None and self.routes.entries is not None
        external = self.routes.route(path)
        own_len = max((len(p) for p in module.prefixes if path == p or path.startswith(p + "/")), default=-1) \
            if module is not None else -1
        if external is not None and len(external[0]) > own_len:
            entry = external[1]
        elif module is not None:
            found = self.routes.entries.get(module.name)
            if found is None:
                return False  # not docked yet (start-up): in-process as always
            entry = found
        else:
            return False
        if not entry.enabled:
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 4404})
            else:
                await gateway_proxy.problem(send, 404, "not-found", "Not found",
                                            f"module {entry.name} is {entry.state} on this station")
            return True
        target = entry.pick()
        if target is None or target == self.local_url:
            if module is not None and module.name == entry.name:
                return False  # this process serves it (or no instance docked yet: start-up, a restart)
            await gateway_proxy.problem(send, 503, "unavailable", "Service temporarily unavailable",
                                        f"no instance of module {entry.name} is routable")
            return True
        if scope["type"] == "websocket":
            await gateway_proxy.proxy_websocket(target, scope, receive, send)
        else:
            assert self._client is not None
            await gateway_proxy.proxy_http(self._client, entry, target, scope, receive, send)
        return True

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self._stack = contextlib.AsyncExitStack()
                try:
                    for module in self.modules.values():
                        await self._stack.enter_async_context(module.app.router.lifespan_context(module.app))
                except BaseException as exc:
                    await self._stack.aclose()
                    await send({"type": "lifespan.startup.failed", "message": f"{type(exc).__name__}: {exc}"})
                    return
                if self.routes is not None:
                    self._client = httpx.AsyncClient(timeout=httpx.Timeout(60.0, connect=2.0),
                                                     limits=httpx.Limits(max_connections=512), follow_redirects=False)
                    self.routes.start()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self.routes is not None:
                    await self.routes.stop()
                if self._client is not None:
                    await self._client.aclose()
                if self._stack is not None:
                    await self._stack.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return

    @staticmethod
    async def _json(send: Send, status: int, body: Any, content_type: str = "application/json") -> None:
        raw = json.dumps(body, default=str).encode()
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", content_type.encode()), (b"content-length", str(len(raw)).encode())]})
        await send({"type": "http.response.body", "body": raw})
