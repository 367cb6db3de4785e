"""The embedded station's gateway reached in-process (`quark_sdk.inprocess`, `ServiceContext.api_client`)."""

from __future__ import annotations

import asyncio
import contextvars
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request

from quark_sdk.inprocess import InProcessTransport, LocalGateway, api_client

LEAK: contextvars.ContextVar[str] = contextvars.ContextVar("leak", default="caller's")


def app() -> FastAPI:
    api = FastAPI()

    @api.get("/who")
    async def who(request: Request) -> dict[str, Any]:
        LEAK.set("callee's")  # never reset: must not reach the caller
        assert request.client is not None
        return {"client": request.client.host, "host": request.headers.get("host"), "scheme": request.url.scheme,
                "path": request.url.path, "query": request.url.query}

    @api.post("/echo")
    async def echo(request: Request) -> dict[str, Any]:
        return {"body": (await request.body()).decode()}

    @api.get("/slow")
    async def slow() -> dict[str, Any]:
        await asyncio.sleep(5)
        return {}

    @api.get("/boom")
    async def boom() -> dict[str, Any]:
        raise RuntimeError("a bug")

    return api


def client(**kw: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=InProcessTransport(app(), **kw), base_url="http://127.0.0.1:8000")


async def test_the_request_is_the_public_one() -> None:
    async with client() as http:
        resp = await http.get("/who", params={"a": "1"})
        assert resp.status_code == 200
        assert resp.json() == {"client": "127.0.0.1", "host": "127.0.0.1:8000", "scheme": "http", "path": "/who",
                               "query": "a=1"}
        assert (await http.post("/echo", content=b"x" * 100_000)).json() == {"body": "x" * 100_000}


async def test_forwarded_for_from_this_process_is_trusted_like_the_server_does() -> None:
    async with client() as http:
        resp = await http.get("/who", headers={"X-Forwarded-For": "203.0.113.7", "X-Forwarded-Proto": "https"})
        assert resp.json()["client"] == "203.0.113.7"
        assert resp.json()["scheme"] == "https"
    async with client(trusted_hosts=None) as http:  # a server without proxy headers
        resp = await http.get("/who", headers={"X-Forwarded-For": "203.0.113.7"})
        assert resp.json()["client"] == "127.0.0.1"


async def test_the_callee_context_does_not_reach_the_caller() -> None:
    async with client() as http:
        await http.get("/who")
    assert LEAK.get() == "caller's"


async def test_the_client_timeout_holds() -> None:
    async with client() as http:
        with pytest.raises(httpx.ReadTimeout):
            await http.get("/slow", timeout=0.2)


async def test_an_exception_in_the_app_is_a_500_answer() -> None:
    async with client() as http:
        resp = await http.get("/boom")
        assert resp.status_code == 500


def test_api_client_is_in_process_only_for_the_local_gateway() -> None:
    local = LocalGateway("http://127.0.0.1:8000", app())
    inproc = api_client(local, "http://127.0.0.1:8000/")
    assert isinstance(inproc._transport, InProcessTransport)
    assert not isinstance(api_client(local, "http://traefik:80")._transport, InProcessTransport)
    assert not isinstance(api_client(None, "http://127.0.0.1:8000")._transport, InProcessTransport)
