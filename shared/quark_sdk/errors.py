"""RFC 9457 problem details for every Quark service.

Service functions raise the plain exceptions below (no HTTP types); the handlers
installed by :func:`install_error_handlers` turn them, FastAPI's own
``HTTPException`` and request validation errors into ``application/problem+json``.
Anything unexpected becomes a 500 problem with no stack trace; an unavailable
dependency (database, NATS, Redis) becomes a 503 so clients know to retry.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger("quark.errors")

OUTAGE_QUIET = 30.0  # seconds after an "unavailable" WARNING during which further ones are DEBUG

PROBLEM_CONTENT_TYPE = "application/problem+json"
PROBLEM_TYPE_BASE = "https://quark.dev/problems/"


class QuarkError(Exception):
    """Base of the errors a service function may raise; each maps to one status."""

    status: int = 400
    code: str = "bad-request"
    title: str = "Bad request"

    def __init__(
        self,
        detail: str | None = None,
        *,
        code: str | None = None,
        extra: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(detail or self.title)
        self.detail = detail or self.title
        if code is not None:
            self.code = code
        self.extra = dict(extra or {})
        self.headers = dict(headers or {})


class InvalidInput(QuarkError):
    status, code, title = 422, "invalid-input", "Invalid input"

    def __init__(self, detail: str, *, field: str | None = None, **kw: Any) -> None:
        super().__init__(detail, **kw)
        if field is not None:
            self.extra.setdefault("errors", [{"field": field, "message": detail}])


class Unauthenticated(QuarkError):
    status, code, title = 401, "unauthenticated", "Authentication required"

    def __init__(self, detail: str | None = None, **kw: Any) -> None:
        kw.setdefault("headers", {"WWW-Authenticate": "Bearer"})
        super().__init__(detail, **kw)


class PermissionDenied(QuarkError):
    status, code, title = 403, "forbidden", "Permission denied"


class NotFound(QuarkError):
    status, code, title = 404, "not-found", "Not found"


class Conflict(QuarkError):
    status, code, title = 409, "conflict", "Conflict"


class Gone(QuarkError):
    status, code, title = 410, "gone", "Gone"


class PayloadTooLarge(QuarkError):
    status, code, title = 413, "payload-too-large", "Payload too large"


class UnsupportedMediaType(QuarkError):
    status, code, title = 415, "unsupported-media-type", "Unsupported media type"


class RateLimited(QuarkError):
    status, code, title = 429, "rate-limited", "Too many requests"

    def __init__(self, detail: str | None = None, *, retry_after: int, **kw: Any) -> None:
        self.retry_after = max(1, int(retry_after))
        kw.setdefault("headers", {"Retry-After": str(self.retry_after)})
        super().__init__(detail, **kw)
        self.extra.setdefault("retry_after", self.retry_after)


class ServiceUnavailable(QuarkError):
    status, code, title = 503, "unavailable", "Service temporarily unavailable"

    def __init__(self, detail: str | None = None, *, retry_after: int = 1, **kw: Any) -> None:
        kw.setdefault("headers", {"Retry-After": str(retry_after)})
        super().__init__(detail, **kw)


_STATUS_TITLES = {
    400: ("bad-request", "Bad request"),
    401: ("unauthenticated", "Authentication required"),
    403: ("forbidden", "Permission denied"),
    404: ("not-found", "Not found"),
    405: ("method-not-allowed", "Method not allowed"),
    406: ("not-acceptable", "Not acceptable"),
    409: ("conflict", "Conflict"),
    413: ("payload-too-large", "Payload too large"),
    415: ("unsupported-media-type", "Unsupported media type"),
    422: ("invalid-input", "Invalid input"),
    429: ("rate-limited", "Too many requests"),
    503: ("unavailable", "Service temporarily unavailable"),
}


def problem_response(
    status: int,
    *,
    code: str | None = None,
    title: str | None = None,
    detail: str | None = None,
    instance: str | None = None,
    extra: Mapping[str, Any] | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    default_code, default_title = _STATUS_TITLES.get(status, ("error", "Error"))
    body: dict[str, Any] = {
        "type": PROBLEM_TYPE_BASE + (code or default_code),
        "title": title or default_title,
        "status": status,
    }
    if detail:
        body["detail"] = detail
    if instance:
        body["instance"] = instance
    if extra:
        body.update(extra)
    return JSONResponse(body, status_code=status, headers=dict(headers or {}), media_type=PROBLEM_CONTENT_TYPE)


def _validation_errors(errors: Sequence[Any]) -> list[dict[str, str]]:
    out = []
    for err in errors:
        loc = [str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path", "header", "cookie")]
        out.append({"field": ".".join(loc) or "body", "message": str(err.get("msg", "invalid"))})
    return out


def is_unavailable_error(exc: BaseException) -> bool:
    """Connection-level failures of our backing servers: a 503, not a 500."""
    import asyncpg
    import redis.exceptions
    from nats.errors import ConnectionClosedError, NoServersError
    from nats.errors import TimeoutError as NatsTimeout
    from sqlalchemy.exc import DBAPIError, InterfaceError
    from sqlalchemy.exc import TimeoutError as PoolTimeout

    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if isinstance(
            cur,
            ConnectionError
            | OSError
            | asyncpg.exceptions.PostgresConnectionError
            | asyncpg.exceptions.CannotConnectNowError
            | asyncpg.exceptions.AdminShutdownError
            | asyncpg.exceptions.InterfaceError
            | redis.exceptions.ConnectionError
            | redis.exceptions.TimeoutError
            | NoServersError
            | ConnectionClosedError
            | NatsTimeout
            | PoolTimeout
            | InterfaceError,
        ):
            return True
        if isinstance(cur, DBAPIError) and cur.connection_invalidated:
            return True
        cur = cur.__cause__ or cur.__context__
    return False


def install_error_handlers(app: FastAPI) -> None:
    async def on_quark_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, QuarkError)
        return problem_response(
            exc.status,
            code=exc.code,
            title=exc.title,
            detail=exc.detail,
            instance=request.url.path,
            extra=exc.extra,
            headers=exc.headers,
        )

    async def on_http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        detail = exc.detail if isinstance(exc.detail, str) else None
        return problem_response(
            exc.status_code, detail=detail, instance=request.url.path, headers=getattr(exc, "headers", None)
        )

    async def on_validation_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        errors = _validation_errors(exc.errors())
        first = errors[0] if errors else {"field": "body", "message": "invalid"}
        return problem_response(
            422,
            detail=f"{first['field']}: {first['message']}",
            instance=request.url.path,
            extra={"errors": errors},
        )

    outage = {"since": -1e9, "more": 0}

    async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
        if is_unavailable_error(exc):
            # An expected outage (a server restarting): one WARNING, then quiet (DEBUG) for OUTAGE_QUIET
            # seconds, with the count of the requests answered 503 meanwhile in the next WARNING.
            import time

            now = time.monotonic()
            if now - outage["since"] > OUTAGE_QUIET:
                more = f" ({outage['more']} more 503s during the previous outage)" if outage["more"] else ""
                log.warning("dependency unavailable on %s %s: %r; answering 503 until it is back%s",
                            request.method, request.url.path, exc, more)
                outage.update(since=now, more=0)
            else:
                outage["more"] += 1
                log.debug("dependency unavailable on %s %s: %r", request.method, request.url.path, exc)
            return problem_response(
                503,
                detail="A backing service is unavailable; retry shortly.",
                instance=request.url.path,
                headers={"Retry-After": "1"},
            )
        log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
        return problem_response(
            500, code="internal", title="Internal server error", instance=request.url.path
        )

    app.add_exception_handler(QuarkError, on_quark_error)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    # Errors of the backing-server client libraries are answered by Starlette's ExceptionMiddleware,
    # which returns the response and is done. The catch-all `Exception` handler below runs in
    # ServerErrorMiddleware, which re-raises after responding, and uvicorn then closes the keep-alive
    # connection: the client (or Traefik) reusing it gets a connection error instead of the 503.
    # (Found by tests/fault/test_postgres_restart.py.)
    for exc_class in _backend_error_classes():
        app.add_exception_handler(exc_class, on_unexpected)
    app.add_exception_handler(Exception, on_unexpected)


def _backend_error_classes() -> tuple[type[Exception], ...]:
    """Base classes of the errors our database, cache and event-bus clients raise."""
    import asyncpg
    import nats.errors
    import redis.exceptions
    from sqlalchemy.exc import SQLAlchemyError

    return (
        OSError,  # ConnectionError, TimeoutError (3.11+) and socket errors
        SQLAlchemyError,
        asyncpg.exceptions.PostgresError,
        asyncpg.exceptions.InterfaceError,
        asyncpg.exceptions.InternalClientError,
        redis.exceptions.RedisError,
        nats.errors.Error,
    )
