"""`GuardedRoute`: the input guards every module's routes share, so no input reaches a 5xx.

Use it as a router's route class: `APIRouter(prefix=..., route_class=GuardedRoute)`.

- The request body is read with a cap (`max_request_bytes` of the module's settings) before FastAPI parses
  it: a larger body is a 413, whatever Content-Length claimed, and a body is never held whole beyond it.
- NUL characters in the path or query are a 422 (PostgreSQL text cannot hold them).
- A value that passed validation but PostgreSQL refuses (SQLSTATE class 22: out of range, bad encoding) or
  asyncpg cannot encode is the input's fault: a 422, not a 500.

Uploads that stream large bodies (media) do not use it; they enforce their own limit while streaming.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from typing import Any
from urllib.parse import unquote

import asyncpg
from fastapi import Request, Response
from fastapi.routing import APIRoute
from sqlalchemy.exc import DBAPIError

from quark_sdk.errors import InvalidInput, PayloadTooLarge

log = logging.getLogger("quark.routing")

DEFAULT_MAX_REQUEST_BYTES = 1_048_576


class GuardedRoute(APIRoute):
    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def guarded(request: Request) -> Response:
            if "\x00" in request.scope.get("path", "") or "\x00" in unquote(
                    request.scope.get("query_string", b"").decode("latin-1")):
                raise InvalidInput("the path or query contains a NUL character")
            if request.method in ("POST", "PUT", "PATCH"):
                await _read_capped_body(request)
            try:
                return await handler(request)
            except (DBAPIError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                if not is_data_error(exc):
                    raise
                log.warning("data error from input on %s %s: %s", request.method, request.url.path, exc)
                raise InvalidInput("a value is out of range or cannot be stored") from None

        return guarded


async def _read_capped_body(request: Request) -> None:
    settings = getattr(getattr(request.app.state, "quark", None), "settings", None)
    limit = int(getattr(settings, "max_request_bytes", DEFAULT_MAX_REQUEST_BYTES))
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise InvalidInput("invalid Content-Length")
        if int(declared) > limit:
            raise PayloadTooLarge(f"request body larger than {limit} bytes", extra={"limit": limit})
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise PayloadTooLarge(f"request body larger than {limit} bytes", extra={"limit": limit})
    request._body = bytes(body)  # what request.body() / json() return from now on


def is_data_error(exc: BaseException) -> bool:
    """A value PostgreSQL refused (SQLSTATE class 22) or asyncpg could not encode: the input's fault."""
    seen: BaseException | None = exc
    for _ in range(3):
        if seen is None:
            break
        state = getattr(seen, "sqlstate", None)
        if isinstance(state, str) and state.startswith("22"):
            return True
        if isinstance(seen, asyncpg.InterfaceError) and isinstance(seen, ValueError):  # client-side DataError
            return True
        seen = getattr(seen, "orig", None) or seen.__cause__
    return False
