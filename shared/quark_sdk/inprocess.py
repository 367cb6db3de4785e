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
from dataclasses import dataclass
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


def api_client(local: LocalGateway | None, base_url: str, **kwargs: Any) -> httpx.AsyncClient:
    """An httpx client for the public API at `base_url`: in-process when it is `local`'s URL, else HTTP."""
    if local is not None and local.serves(base_url):
        kwargs["transport"] = InProcessTransport(local.app, trusted_hosts=local.trusted_hosts)
    return httpx.AsyncClient(base_url=base_url, **kwargs)
