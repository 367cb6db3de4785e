"""The embedded station's gateway reached in-process (`quark_sdk.inprocess`, `ServiceContext.api_client`)."""

from __future__ import annotations

import asyncio
import contextvars
import json
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request

from quark_sdk.inprocess import Answer, InProcessTransport, LocalGateway, api_client, direct_get

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
        await asyncio.Event().wait()  # never answers: what is tested is the caller's timeout cancelling it
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


# -- direct_get: the same request without httpx --------------------------------------------------------------


def echo_app() -> FastAPI:
    api = FastAPI()

    @api.get("/{rest:path}")
    async def everything(request: Request, rest: str) -> dict[str, Any]:
        LEAK.set("callee's")
        assert request.client is not None
        return {"client": request.client.host, "scheme": request.url.scheme, "path": request.url.path,
                "raw_path": request.scope["raw_path"].decode(), "query": request.url.query,
                "server": list(request.scope["server"]), "root_path": request.scope["root_path"],
                "headers": [[k.decode(), v.decode()] for k, v in request.scope["headers"]]}

    return api


def echo_client(base_url: str = "http://127.0.0.1:8000", **kw: Any) -> httpx.AsyncClient:
    return api_client(LocalGateway(base_url, echo_app()), base_url, **kw)


@pytest.mark.parametrize("base_url", ["http://127.0.0.1:8000", "http://localhost", "http://127.0.0.1:8000/station/"])
async def test_direct_get_sends_the_request_httpx_sends(base_url: str) -> None:
    async with echo_client(base_url, headers={"User-Agent": "quark-web/0.1", "X-Mine": "a"}, timeout=5) as http:
        for params in (None, {}, {"limit": 30, "before": 7}, {"q": "ä b&c=d/é", "flag": True, "many": ["1", "2"]}):
            via_httpx = await http.get("/api/v1/chats/x-1_a.b~c@d:e", params=params,
                                       headers={"Authorization": "Bearer t", "X-Mine": "b"})
            direct = await direct_get(http, "/api/v1/chats/x-1_a.b~c@d:e", params=params,
                                      headers={"Authorization": "Bearer t", "X-Mine": "b"})
            assert direct is not None
            assert (direct.status_code, direct.json()) == (via_httpx.status_code, via_httpx.json())
            assert direct.headers["content-type"] == via_httpx.headers["content-type"] == "application/json"
            assert direct.content == via_httpx.content and direct.reason_phrase == "OK"
    assert LEAK.get() == "caller's"


async def test_direct_get_leaves_what_it_does_not_build_to_httpx() -> None:
    async with echo_client() as http:
        for odd in ("/a b", "/a%41", "/é", "/a?b=1", "/a#b"):
            assert await direct_get(http, odd) is None
        http.cookies.set("jar", "1")
        assert await direct_get(http, "/plain") is None
    async with httpx.AsyncClient(base_url="http://127.0.0.1:8000") as over_http:
        assert await direct_get(over_http, "/plain") is None


async def test_direct_get_keeps_the_transport_rules() -> None:
    local = LocalGateway("http://127.0.0.1:8000", app())
    async with api_client(local, local.url, timeout=5) as http:
        forwarded = await direct_get(http, "/who", headers={"X-Forwarded-For": "203.0.113.7"})
        assert forwarded is not None and forwarded.json()["client"] == "203.0.113.7"
        boom = await direct_get(http, "/boom")
        assert boom is not None and boom.status_code == 500 and boom.reason_phrase == "Internal Server Error"
        missing = await direct_get(http, "/nowhere")
        assert missing is not None and missing.status_code == 404 and missing.json() == {"detail": "Not Found"}
        with pytest.raises(httpx.ReadTimeout):
            await direct_get(http, "/slow", timeout=0.2)
    assert LEAK.get() == "caller's"


async def test_direct_get_decodes_a_compressed_answer_as_httpx_does() -> None:
    from starlette.middleware.gzip import GZipMiddleware

    big = FastAPI()

    @big.get("/big")
    async def answer() -> dict[str, str]:
        return {"text": "x" * 5000}

    big.add_middleware(GZipMiddleware, minimum_size=100)
    async with api_client(LocalGateway("http://127.0.0.1:8000", big), "http://127.0.0.1:8000") as http:
        direct = await direct_get(http, "/big")
        assert direct is not None and direct.headers["content-encoding"] == "gzip"
        assert direct.json() == (await http.get("/big")).json() == {"text": "x" * 5000}


def test_an_answer_reads_json_as_json_does() -> None:
    """orjson reads the answer; what it refuses and Python's json writes (NaN, Infinity) still reads."""
    page = {"items": [{"id": 2**63 - 1, "body": "é \u2028 \"q\"", "at": None, "n": -1.5e-7, "ok": True}], "older": 7}
    bodies = (json.dumps(page).encode(), json.dumps(page, ensure_ascii=False).encode(),
              b'{"x": NaN, "y": -Infinity}', b"[]", b" 1 ")
    for body in bodies:
        answer = Answer(200, [(b"content-type", b"application/json")], body)
        assert repr(answer.json()) == repr(json.loads(body))
    with pytest.raises(ValueError):
        Answer(200, [], b"{not json").json()
