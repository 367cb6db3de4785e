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

from fastapi import FastAPI

from quark_sdk import telemetry
from quark_sdk.app import ServiceContext
from quark_sdk.errors import PROBLEM_CONTENT_TYPE, PROBLEM_TYPE_BASE

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


@dataclass
class MountedModule:
    name: str
    app: FastAPI
    prefixes: tuple[str, ...]
    fallback: bool = False  # serves every path no prefix claims (after the gateway's own /health, /metrics...)

    @property
    def ctx(self) -> ServiceContext:
        ctx: ServiceContext = self.app.state.quark
        return ctx


class EmbeddedGateway:
    def __init__(self, modules: list[MountedModule]) -> None:
        self.modules = {m.name: m for m in modules}
        self._routes = sorted(((p, m) for m in modules for p in m.prefixes), key=lambda r: -len(r[0]))
        self.fallback = next((m for m in modules if m.fallback), None)
        self._stack: contextlib.AsyncExitStack | None = None

    def route(self, path: str) -> MountedModule | None:
        for prefix, module in self._routes:
            if path == prefix or path.startswith(prefix + "/") or path.startswith(prefix + "?"):
                return module
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        path: str = scope.get("path", "")
        module = self.route(path)
        if module is not None:
            await module.app(scope, receive, send)
            return
        if scope["type"] != "http":
            if self.fallback is not None:
                await self.fallback.app(scope, receive, send)
                return
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
        if path.startswith("/openapi/") and path.endswith(".json"):
            mod = self.modules.get(path.removeprefix("/openapi/").removesuffix(".json"))
            if mod is not None:
                await self._json(send, 200, mod.app.openapi())
                return
        if self.fallback is not None:  # the lowest priority: after every prefix and the gateway's own paths
            await self.fallback.app(scope, receive, send)
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
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
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
