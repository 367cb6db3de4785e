"""The embedded gateway's catch-all module (`/` in `exposes.api`, the web client): it answers every path no
prefix claims, after the gateway's own /health, /metrics and /openapi paths — never before a module."""

from __future__ import annotations

import httpx
from fastapi import FastAPI

from quark_sdk.gateway import EmbeddedGateway, MountedModule


class _Ctx:
    name = "x"

    async def readiness(self) -> dict[str, str]:
        return {"database": "ok"}


def _app(name: str) -> FastAPI:
    app = FastAPI()
    app.state.quark = _Ctx()

    @app.api_route("/{path:path}", methods=["GET", "POST"])
    async def anything(path: str) -> dict[str, str]:
        return {"module": name, "path": "/" + path}

    return app


async def test_unclaimed_paths_go_to_the_fallback_module_and_prefixes_still_win() -> None:
    gateway = EmbeddedGateway([
        MountedModule("blog", _app("blog"), ("/api/v1/posts",)),
        MountedModule("web", _app("web"), ("/api/v1/web", "/")),
    ])
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=gateway), base_url="http://gw") as client:
        async def who(path: str) -> str:
            resp = await client.get(path)
            return str(resp.json().get("module", "gateway"))

        assert await who("/api/v1/posts/1") == "blog"
        assert await who("/api/v1/web/me") == "web"
        assert await who("/") == "web"
        assert await who("/@alice/hello") == "web"
        assert await who("/api/v1/nobody") == "web"  # the web module answers it with a problem 404 itself
        health = await client.get("/health")
        assert health.json()["status"] == "ok" and "modules" in health.json()  # the gateway's own
        assert (await client.get("/health/web")).json()["module"] == "web"


async def test_without_a_fallback_module_the_root_lists_the_modules() -> None:
    gateway = EmbeddedGateway([MountedModule("blog", _app("blog"), ("/api/v1/posts",))])
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=gateway), base_url="http://gw") as client:
        root = await client.get("/")
        assert root.status_code == 200 and "blog" in root.json()["modules"]
        assert (await client.get("/nope")).status_code == 404
