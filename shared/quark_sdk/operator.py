"""What every module shows an operator, written once: its recent logs and its database's state.

* A bounded in-memory ring of the process's recent log records (the same fields as the JSON log lines:
  time, level, logger, message, service, trace_id) — the console's "recent logs" without a log store. The
  real history is Loki's (DESIGN §7); this ring answers "what did auth just say" on any station, dev included.
* `GET /operator/<module>/logs?level=&trace_id=&q=&limit=` and `GET /operator/<module>/status` on each
  module's app, outside its API prefix like /health. The module's name is in the path so that one URL
  shape works both on a module's own instance (fleet) and through the embedded gateway (one process),
  which forwards `/operator/<module>/...` to that module. The hub's operator API fans out to every
  instance of a module with the operator's own token.

Only a user holding both `admin` and `operator` may read them: logs carry internal addresses and ids.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from sqlalchemy import text

from quark_sdk.auth import CurrentUser, Principal
from quark_sdk.errors import NotFound, PermissionDenied

CAPACITY = 2000
MESSAGE_CHARS = 2000
LEVELS = {"DEBUG": 10, "INFO": 20, "WARNING": 30, "ERROR": 40, "CRITICAL": 50}
OPERATOR_ROLES = ("admin", "operator")


class LogRing(logging.Handler):
    """Keeps the last `capacity` records of the process as small dicts (oldest dropped first)."""

    def __init__(self, capacity: int = CAPACITY) -> None:
        super().__init__(level=logging.DEBUG)
        self.records: deque[dict[str, Any]] = deque(maxlen=capacity)
        self.default_service = "quark"
        self._seq = 0
        self._guard = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        from quark_sdk import telemetry

        try:
            trace_id, _ = telemetry._trace_ids()
            service = getattr(record, "service", None) or telemetry._current_service.get() or self.default_service
            message = record.getMessage()
            if record.exc_info and record.exc_info[1] is not None:
                message += f" [{type(record.exc_info[1]).__name__}: {record.exc_info[1]}]"
            with self._guard:
                self._seq += 1
                self.records.append({
                    "seq": self._seq,
                    "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
                    "level": record.levelname, "levelno": record.levelno, "logger": record.name,
                    "message": message[:MESSAGE_CHARS], "service": str(service), "trace_id": trace_id,
                })
        except Exception:  # a log handler never raises into the code that logs
            self.handleError(record)

    def query(self, *, service: str | None = None, level: str | None = None, trace_id: str | None = None,
              contains: str | None = None, limit: int = 200) -> list[dict[str, Any]]:
        """Newest first, filtered: a service, a minimum level, one trace, a substring of the message."""
        floor = LEVELS.get((level or "DEBUG").upper(), 10)
        needle = (contains or "").lower()
        with self._guard:
            snapshot = list(self.records)
        out = []
        for rec in reversed(snapshot):
            if service and rec["service"] != service:
                continue
            if rec["levelno"] < floor or (trace_id and rec["trace_id"] != trace_id):
                continue
            if needle and needle not in rec["message"].lower():
                continue
            out.append({k: v for k, v in rec.items() if k != "levelno"})
            if len(out) >= limit:
                break
        return out


RING = LogRing()


def install(service: str) -> None:
    """Attach the process's ring to the root logger (once; later calls only name the default service)."""
    root = logging.getLogger()
    if RING not in root.handlers:
        root.addHandler(RING)
    RING.default_service = service


async def require_operator(principal: CurrentUser) -> Principal:
    """A user holding both `admin` and `operator` (operator is a role of its own, not implied by admin)."""
    if principal.kind != "user" or not all(principal.has_role(r) for r in OPERATOR_ROLES):
        raise PermissionDenied("requires the roles admin and operator")
    return principal


Operator = Annotated[Principal, Depends(require_operator)]


def operator_router() -> APIRouter:
    router = APIRouter(tags=["operator"])

    def own(request: Request, module: str) -> Any:
        ctx = request.app.state.quark
        if module != ctx.name:
            raise NotFound(f"this instance serves {ctx.name}, not {module[:32]}")
        return ctx

    @router.get("/operator/{module}/logs", summary="Recent log records of this module (admin and operator)")
    async def logs(request: Request, module: str, _: Operator,
                   level: Annotated[str | None, Query(pattern="^(?i:debug|info|warning|error|critical)$")] = None,
                   trace_id: Annotated[str | None, Query(pattern="^[0-9a-f]{32}$")] = None,
                   q: Annotated[str | None, Query(max_length=200)] = None,
                   limit: Annotated[int, Query(ge=1, le=1000)] = 200) -> dict[str, Any]:
        ctx = own(request, module)
        return {"module": ctx.name, "capacity": RING.records.maxlen,
                "items": RING.query(service=ctx.name, level=level, trace_id=trace_id, contains=q, limit=limit)}

    @router.get("/operator/{module}/status",
                summary="This module's readiness (database, Valkey, NATS, storage) and its database's state")
    async def status(request: Request, module: str, _: Operator) -> dict[str, Any]:
        ctx = own(request, module)
        out: dict[str, Any] = {"module": ctx.name, "database": None, "readiness": await ctx.readiness()}
        if ctx.manifest.requires.database:
            out["database"] = await database_status(ctx.database())
        return out

    return router


async def database_status(db: Any) -> dict[str, Any]:
    """Size and connections of the module's own database, and its connection pool (never raises)."""
    try:
        async with db.engine.connect() as conn:
            row = (await conn.execute(text(
                "SELECT current_database() AS name, pg_database_size(current_database()) AS size, "
                "(SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()) AS connections, "
                "(SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND state = 'active') AS active, current_setting('server_version') AS version, "
                "pg_is_in_recovery() AS replica"))).one()
        pool = db.engine.pool
        return {"name": row.name, "size_bytes": int(row.size), "connections": int(row.connections),
                "active": int(row.active), "version": row.version, "replica": bool(row.replica),
                "pool": {"size": pool.size(), "checked_out": pool.checkedout()}}
    except Exception as exc:
        return {"error": f"{type(exc).__name__}: {str(exc)[:200]}"}
