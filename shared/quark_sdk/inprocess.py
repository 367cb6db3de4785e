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
from http import HTTPStatus
from typing import Any

import httpx
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
        self._asgi = httpx.ASGITransport(app=served, raise_app_exceptions=False, client=LOOPBACK_CLIENT)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        timeout: dict[str, Any] = request.extensions.get("timeout") or {}
        limit = timeout.get("read")
        task = asyncio.create_task(self._asgi.handle_async_request(request))
        try:
            async with asyncio.timeout(limit):
                return await task
        except TimeoutError:
            raise httpx.ReadTimeout(f"no answer within {limit} s (in-process)", request=request) from None

    async def aclose(self) -> None:
        await self._asgi.aclose()

    async def get(self, scope: dict[str, Any], limit: float | None) -> Answer:
        """A bodiless request given as its ASGI scope (`direct_get` builds it): the same rules as
        `handle_async_request` — a task of its own, the read timeout, an escaped exception is a 500."""
        task = asyncio.create_task(_run(self._served, scope))
        try:
            async with asyncio.timeout(limit):
                return await task
        except TimeoutError:
            raise httpx.ReadTimeout(f"no answer within {limit} s (in-process)") from None


@dataclass(frozen=True)
class Answer:
    """An answer read whole, with what a caller reads of an `httpx.Response`: `status_code`, `headers`
    (lower-case names; a repeated header's values joined by ", ", as httpx's `Headers.get` does), `content`,
    `json()` and `reason_phrase`."""

    status_code: int
    headers: Mapping[str, str]
    content: bytes

    def json(self) -> Any:
        return json.loads(self.content)

    @property
    def reason_phrase(self) -> str:
        try:
            return HTTPStatus(self.status_code).phrase
        except ValueError:
            return ""


async def _run(app: ASGIApp, scope: dict[str, Any]) -> Answer:
    """Call `app` as a server would for a request without a body; the answer read whole."""
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
        return {"type": "http.request", "body": b"", "more_body": False}

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
    names: dict[str, str] = {}
    for name, value in headers:
        key, text = name.decode("latin-1").lower(), value.decode("latin-1")
        names[key] = f"{names[key]}, {text}" if key in names else text
    content = b"".join(body)
    if names.get("content-encoding", "identity") != "identity":  # decoded as httpx does (gzip, deflate...)
        content = httpx.Response(status or 500, headers=headers, content=content).content
    return Answer(status or 500, names, content)


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
    return await transport.get(scope, limit)


def api_client(local: LocalGateway | None, base_url: str, **kwargs: Any) -> httpx.AsyncClient:
    """An httpx client for the public API at `base_url`: in-process when it is `local`'s URL, else HTTP."""
    if local is not None and local.serves(base_url):
        kwargs["transport"] = InProcessTransport(local.app, trusted_hosts=local.trusted_hosts)
    return httpx.AsyncClient(base_url=base_url, **kwargs)
