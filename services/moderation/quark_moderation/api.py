"""HTTP routes of moderation (prefix /api/v1/moderation): thin, they call queue, decisions and audit.

The queue and decisions need the moderator role (admins hold it too); the audit log is for admins only."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Response
from fastapi.responses import StreamingResponse

from quark_moderation import audit, decisions, queue
from quark_moderation.runtime import ModerationRuntime
from quark_moderation.schemas import (
    AuditPage,
    CaseOut,
    CasePage,
    DecisionOut,
    DecisionRequest,
    Kind,
    Source,
    State,
)
from quark_sdk.app import DbSession, RuntimeDep
from quark_sdk.auth import Principal, WritingUser, require_role
from quark_sdk.pagination import Cursor, Limit
from quark_sdk.routing import GuardedRoute

Runtime = Annotated[ModerationRuntime, RuntimeDep]
Moderator = Annotated[Principal, Depends(require_role("moderator"))]
Admin = Annotated[Principal, Depends(require_role("admin"))]

router = APIRouter(prefix="/api/v1/moderation", tags=["moderation"], route_class=GuardedRoute)

ShortText = Annotated[str | None, Query(max_length=128)]


@router.get("/cases", response_model=CasePage)
async def list_cases(_: Moderator, session: DbSession, state: State = "open", kind: Kind | None = None,
                     source: Source | None = None, limit: Limit = 20, cursor: Cursor = None) -> CasePage:
    """The queue: cases oldest first, each grouping the reports and flags about one target."""
    items, next_cursor = await queue.list_cases(session, state=state, kind=kind, source=source, limit=limit,
                                                cursor=cursor)
    return CasePage.model_validate({"items": items, "next_cursor": next_cursor})


@router.get("/cases/{case_id}", response_model=CaseOut)
async def get_case(case_id: uuid.UUID, _: Moderator, session: DbSession) -> CaseOut:
    """One case: the snapshot of the reported content in its context, every signal, every decision."""
    return CaseOut.model_validate(await queue.get_case(session, case_id))


@router.post("/cases/{case_id}/decisions", status_code=201, response_model=DecisionOut,
             responses={200: {"model": DecisionOut, "description": "the same decision, made before"}})
async def decide(case_id: uuid.UUID, body: DecisionRequest, moderator: Moderator, _: WritingUser, rt: Runtime,
                 session: DbSession, response: Response) -> DecisionOut:
    """Decide: dismiss, hide, delete, warn, suspend the author (`duration_hours`). Idempotent."""
    row, created = await decisions.decide(rt, session, moderator, case_id, body)
    if not created:
        response.status_code = 200
    return DecisionOut.model_validate(queue.decision_out(row))


def _audit_filters(actor_id: ShortText = None, action: Annotated[str | None, Query(max_length=64)] = None,
                   module: Annotated[str | None, Query(max_length=32)] = None, target_id: ShortText = None,
                   since: datetime | None = None, until: datetime | None = None) -> dict[str, object]:
    return {"actor_id": actor_id, "action": action, "module": module, "target_id": target_id, "since": since,
            "until": until}


AuditFilters = Annotated[dict[str, object], Depends(_audit_filters)]


@router.get("/audit", response_model=AuditPage)
async def list_audit(_: Admin, session: DbSession, filters: AuditFilters, limit: Limit = 50,
                     cursor: Cursor = None) -> AuditPage:
    """The audit log, newest first: decisions and the admin actions of every module."""
    items, next_cursor = await audit.list_entries(session, limit=limit, cursor=cursor, **filters)
    return AuditPage.model_validate({"items": items, "next_cursor": next_cursor})


@router.get("/audit/export", response_class=StreamingResponse,
            responses={200: {"content": {"text/csv": {}, "application/jsonl": {}}}})
async def export_audit(admin: Admin, _: WritingUser, rt: Runtime, session: DbSession, filters: AuditFilters,
                       format: Literal["csv", "jsonl"] = "csv") -> StreamingResponse:
    """The matching entries as CSV or JSON lines (at most `export_max_rows`); the export is itself audited."""
    audit.check_filters(**filters)  # bad filters: 422 before the download starts
    async with session.begin():
        await audit.record(session, at=rt.now(), actor_id=admin.subject, action="moderation.audit_exported",
                           module="moderation", target_kind=None, target_id=None, reason=None,
                           details={"format": format, **{k: str(v) for k, v in filters.items() if v is not None}})
    media = "text/csv; charset=utf-8" if format == "csv" else "application/jsonl"
    stamp = rt.now().strftime("%Y%m%dT%H%M%SZ")
    return StreamingResponse(
        audit.export(rt.ctx.database(), fmt=format, max_rows=rt.settings.export_max_rows, **filters),
        media_type=media,
        headers={"Content-Disposition": f'attachment; filename="quark-audit-{stamp}.{format}"'},
    )


routers = [router]
