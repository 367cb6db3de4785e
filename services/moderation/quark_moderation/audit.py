"""The audit log: who did what, when and why. Decisions are written here in their own transaction; admin
actions of other modules arrive as events naming their `actor_id`. Admins read it newest first and export it."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import Select, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from quark_moderation.models import AuditEntry
from quark_moderation.runtime import ModerationRuntime
from quark_moderation.schemas import AdminActionIn
from quark_sdk.db import Database
from quark_sdk.errors import InvalidInput
from quark_sdk.events import CloudEvent
from quark_sdk.pagination import decode_cursor, encode_cursor, page_of

COLUMNS = ("seq", "at", "actor_id", "action", "module", "target_kind", "target_id", "reason", "details")
EXPORT_BATCH = 1000


async def record(session: AsyncSession, *, at: datetime, actor_id: str | None, action: str, module: str,
                 target_kind: str | None, target_id: str | None, reason: str | None,
                 details: dict[str, Any] | None = None, event_id: str | None = None) -> None:
    """Add one entry inside the caller's transaction (an event already recorded is not recorded twice)."""
    await session.execute(
        insert(AuditEntry).values(at=at, actor_id=actor_id, action=action, module=module, target_kind=target_kind,
                                  target_id=target_id, reason=reason, details=details or {}, event_id=event_id)
        .on_conflict_do_nothing(index_elements=["event_id"])
    )


async def record_event(rt: ModerationRuntime, session: AsyncSession, event: CloudEvent) -> None:
    """An admin action another module reported (`quark.auth.role_changed`, `quark.user.suspended`, ...)."""
    data = event.payload(AdminActionIn)
    domain_action = event.type.removeprefix("quark.")
    module = domain_action.split(".", 1)[0]
    extra = dict(data.model_extra or {})
    target_id = data.user_id or extra.get("module") or extra.get("name") or event.subject
    target_kind = "user" if data.user_id else ("module" if module == "hub" else None)
    details = {k: v for k, v in (event.data or {}).items() if k not in ("actor_id", "reason")}
    await record(session, at=event.time or rt.now(), actor_id=data.actor_id, action=domain_action, module=module,
                 target_kind=target_kind, target_id=str(target_id)[:128] if target_id else None,
                 reason=data.reason, details=details, event_id=event.id)


def _filtered(stmt: Select[Any], *, actor_id: str | None, action: str | None, module: str | None,
              target_id: str | None, since: datetime | None, until: datetime | None) -> Select[Any]:
    if actor_id:
        stmt = stmt.where(AuditEntry.actor_id == actor_id)
    if action:
        # "moderation" matches every moderation.* action; "moderation.hide" that one.
        stmt = stmt.where((AuditEntry.action == action) | AuditEntry.action.startswith(action + ".", autoescape=True))
    if module:
        stmt = stmt.where(AuditEntry.module == module)
    if target_id:
        stmt = stmt.where(AuditEntry.target_id == target_id)
    if since is not None:
        stmt = stmt.where(AuditEntry.at >= since)
    if until is not None:
        stmt = stmt.where(AuditEntry.at < until)
    check_filters(since=since, until=until)
    return stmt


def check_filters(*, since: datetime | None = None, until: datetime | None = None, **_: Any) -> None:
    if since is not None and until is not None and until <= since:
        raise InvalidInput("until must be after since", field="until")


def entry_out(e: AuditEntry) -> dict[str, Any]:
    return {c: getattr(e, c) for c in COLUMNS}


async def list_entries(session: AsyncSession, *, limit: int, cursor: str | None,
                       **filters: Any) -> tuple[list[dict[str, Any]], str | None]:
    """Newest first."""
    stmt = _filtered(select(AuditEntry), **filters)
    if cursor:
        (before,) = decode_cursor(cursor, (int,))
        stmt = stmt.where(AuditEntry.seq < before)
    async with session.begin():
        rows = (await session.scalars(stmt.order_by(AuditEntry.seq.desc()).limit(limit + 1))).all()
    return page_of([entry_out(e) for e in rows], limit, lambda e: encode_cursor(e["seq"]))


async def export(db: Database, *, fmt: str, max_rows: int, **filters: Any) -> AsyncIterator[bytes]:
    """The matching entries, newest first, as CSV or JSON lines, read in batches (each its own short
    transaction) so an export of the whole log never holds one open for long."""
    base = _filtered(select(AuditEntry), **filters)
    if fmt == "csv":
        yield _csv_line(COLUMNS)
    before: int | None = None
    sent = 0
    while sent < max_rows:
        stmt = base if before is None else base.where(AuditEntry.seq < before)
        async with db.session() as session, session.begin():
            rows = (await session.scalars(
                stmt.order_by(AuditEntry.seq.desc()).limit(min(EXPORT_BATCH, max_rows - sent)))).all()
        if not rows:
            return
        chunk = io.BytesIO()
        for e in rows:
            out = entry_out(e)
            if fmt == "csv":
                chunk.write(_csv_line([_cell(out[c]) for c in COLUMNS]))
            else:
                chunk.write(orjson.dumps(out) + b"\n")
        yield chunk.getvalue()
        sent += len(rows)
        before = rows[-1].seq


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return orjson.dumps(value).decode()
    text = str(value)
    # A cell a spreadsheet would run as a formula is quoted as text (CSV injection).
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def _csv_line(cells: Any) -> bytes:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\r\n").writerow(cells)
    return buf.getvalue().encode()
