"""The embedded station's gateway reached in-process: the public API without loopback HTTP.

In `quark dev` every module runs in one process behind one ASGI gateway (`quark_sdk.gateway`). A module
that calls the station's public API (the web client calls the others as the person) would otherwise send
each call out through a socket to its own process: the HTTP client's connection pool and HTTP/1.1 writer,
the kernel's loopback, the server's parser, then the same gateway. `ServiceContext.api_client` hands such
calls to the gateway app directly instead, when the URL called is the station's own gateway; anywhere
else (the fleet, another URL) it is plain HTTP. The request is the same public request either way — same
URL, `Host`, headers and body, the same gateway routing (the hub's table, disabled modules, instances
outside this process), the called module's own middleware, token checks and problem+json errors.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass
from functools import cached_property
from http import HTTPStatus
from typing import Any

import httpx
import orjson
from starlette.types import ASGIApp
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

LOOPBACK_CLIENT = ("127.0.0.1", 0)


@dataclass(frozen=True)
class LocalGateway:
    """The gateway of the station this module runs in: its public URL and its ASGI app."""

    url: str
    app: ASGIApp
    # What the server in front of the gateway trusts for X-Forwarded-For / -Proto (uvicorn's
    # `forwarded_allow_ips`); None: the server does not read proxy headers.
    trusted_hosts: list[str] | str | None = "127.0.0.1"

    def serves(self, base_url: str) -> bool:
        return base_url.rstrip("/") == self.url.rstrip("/")


class InProcessTransport(httpx.AsyncBaseTransport):
    """httpx transport that hands each request to an ASGI app in this process, as its server would.

    - The caller is this process, a loopback client: like uvicorn in front of the gateway (`proxy_headers`),
      an `X-Forwarded-For` it sends becomes the request's client (auth's per-address limits see the
      browser, not the station).
    - Each request runs in a task of its own, so nothing the called module puts in context variables
      reaches the caller, and the caller's cancellation cancels it.
    - The client's timeout holds (its `read` value bounds the whole answer): `httpx.ReadTimeout`, as over HTTP.
    - An exception the app lets escape is a 500 answer, as a server sends, never an exception in the caller.

    The answer is read whole (API answers, not streams); WebSockets are not for this transport.
    """

    def __init__(self, app: ASGIApp, *, trusted_hosts: list[str] | str | None = "127.0.0.1") -> None:
        served: Any = ProxyHeadersMiddleware(app, trusted_hosts=trusted_hosts) if trusted_hosts else app  # type: ignore[arg-type]
        self._served = served

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        timeout: dict[str, Any] = request.extensions.get("timeout") or {}
        url = request.url
        scope: dict[str, Any] = {
            "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": request.method,
            "headers": [(k.lower(), v) for k, v in request.headers.raw],
            "scheme": url.scheme, "path": url.path, "raw_path": url.raw_path.split(b"?", 1)[0],
            "query_string": url.query, "server": (url.host, url.port), "client": LOOPBACK_CLIENT, "root_path": "",
        }
        answer = await self.call(scope, await request.aread(), timeout.get("read"), request)
        return httpx.Response(answer.status_code, headers=answer.raw_headers, stream=httpx.ByteStream(answer.body))

    async def call(self, scope: dict[str, Any], body: bytes, limit: float | None,
                   request: httpx.Request | None = None) -> Answer:
        """The one way in: a task of its own, the read timeout, an escaped exception is a 500."""
        task = asyncio.create_task(_run(self._served, scope, body))
        try:
            async with asyncio.timeout(limit):
                return await task
        except TimeoutError:
            raise httpx.ReadTimeout(f"no answer within {limit} s (in-process)", request=request) from None


@dataclass(frozen=True)
class Answer:
    """An answer read whole, with what a caller reads of an `httpx.Response`: `status_code`, `headers`
    (lower-case names; a repeated header's values joined by ", ", as httpx's `Headers.get` does), `content`
    (decoded as httpx decodes it), `json()` and `reason_phrase`; `raw_headers` and `body` as the app sent them."""

    status_code: int
    raw_headers: list[tuple[bytes, bytes]]
    body: bytes

    @cached_property
    def headers(self) -> Mapping[str, str]:
        names: dict[str, str] = {}
        for name, value in self.raw_headers:
            key, text = name.decode("latin-1").lower(), value.decode("latin-1")
            names[key] = f"{names[key]}, {text}" if key in names else text
        return names

    @cached_property
    def content(self) -> bytes:
        if self.headers.get("content-encoding", "identity") == "identity":
            return self.body
        # gzip, deflate...: decoded as httpx decodes them
        return httpx.Response(self.status_code, headers=self.raw_headers, content=self.body).content

    def json(self) -> Any:
        """The body as JSON, read with orjson (half of json's time on a chat's history page). What Python's json
        also writes and orjson refuses (NaN, Infinity) falls back to json; orjson reads an integer beyond 64 bits
        as a float, and the modules' APIs bound theirs to 64 bits."""
        try:
            return orjson.loads(self.content)
        except orjson.JSONDecodeError:
            return json.loads(self.content)

    @property
    def reason_phrase(self) -> str:
        try:
            return HTTPStatus(self.status_code).phrase
        except ValueError:
            return ""


async def _run(app: ASGIApp, scope: dict[str, Any], request_body: bytes) -> Answer:
    """Call `app` as a server would; the answer read whole."""
    status: int | None = None
    headers: list[tuple[bytes, bytes]] = []
    body: list[bytes] = []
    done = asyncio.Event()
    asked = False

    async def receive() -> dict[str, Any]:
        nonlocal asked
        if asked:
            await done.wait()
            return {"type": "http.disconnect"}
        asked = True
        return {"type": "http.request", "body": request_body, "more_body": False}

    async def send(message: MutableMapping[str, Any]) -> None:
        nonlocal status, headers
        if message["type"] == "http.response.start":
            status, headers = message["status"], list(message.get("headers") or [])
        elif message["type"] == "http.response.body":
            if message.get("body") and scope["method"] != "HEAD":
                body.append(message["body"])
            if not message.get("more_body", False):
                done.set()

    try:
        await app(scope, receive, send)
    except Exception:
        if status is None:
            status, headers = 500, []
    done.set()
    return Answer(status or 500, headers, b"".join(body))


# What `direct_get` sends as it is; a path with anything else (percent signs, spaces, non-ASCII...) goes through
# httpx, whose URL rules then decide its encoding.
_PLAIN_PATH = re.compile(r"/[A-Za-z0-9\-._~/@:]*")


async def direct_get(client: httpx.AsyncClient, path: str, *, params: Mapping[str, Any] | None = None,
                     headers: Mapping[str, str] | None = None, timeout: float | None = None) -> Answer | None:
    """`client.get(path, params=, headers=, timeout=)` without httpx, when `client` is an `api_client` that calls
    the station's gateway in-process; None otherwise (the caller sends it through `client`).

    httpx builds each request (URL parsing and merging, header normalisation, the send machinery) in ~0.14-0.28 ms
    of CPU; this builds the ASGI scope itself, with the very request httpx would send: the client's base URL and
    default headers (`Host`, `Accept`, `Accept-Encoding`, `Connection`, `User-Agent`, its own), the given ones,
    the query as httpx encodes it (`httpx.QueryParams`). Plain paths only, and no cookie jar in use.
    """
    transport = getattr(client, "_transport", None)
    if not isinstance(transport, InProcessTransport) or getattr(client, "_mounts", None) or client.cookies:
        return None
    base = client.base_url
    full = base.raw_path.decode("ascii").rstrip("/") + "/" + path.lstrip("/")
    if _PLAIN_PATH.fullmatch(full) is None:
        return None
    merged: dict[str, str] = {"host": base.netloc.decode("ascii")}
    for name, value in client.headers.multi_items():
        merged[name.lower()] = value
    for name, value in (headers or {}).items():  # httpx's merge: a header given again moves to the end
        merged.pop(name.lower(), None)
        merged[name.lower()] = value
    query = str(httpx.QueryParams(params)).encode("ascii") if params else b""
    scope: dict[str, Any] = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
        "headers": [(k.encode("latin-1"), v.encode("latin-1")) for k, v in merged.items()],
        "scheme": base.scheme, "path": full, "raw_path": full.encode("ascii"), "query_string": query,
        "server": (base.host, base.port), "client": LOOPBACK_CLIENT, "root_path": "",
    }
    limit = timeout if timeout is not None else client.timeout.read
    return await transport.call(scope, b"", limit)


def api_client(local: LocalGateway | None, base_url: str, **kwargs: Any) -> httpx.AsyncClient:
    """An httpx client for the public API at `base_url`: in-process when it is `local`'s URL, else HTTP."""
    if local is not None and local.serves(base_url):
        kwargs["transport"] = InProcessTransport(local.app, trusted_hosts=local.trusted_hosts)
    return httpx.AsyncClient(base_url=base_url, **kwargs)
