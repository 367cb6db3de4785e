"""HTTP routes of the AI service (prefix /api/v1/ai): thin, they authorise and call service functions.

Every request body is capped (`max_request_bytes`, 413) before it is parsed. Draft routes are the
author's own (someone else's draft is a 404); moderation review needs a moderator; the run log
needs an admin.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, Path, Query, Request

from quark_ai import service
from quark_ai.models import AgentRun, Draft, ModerationResult
from quark_ai.runtime import AIRuntime
from quark_ai.schemas import (
    AssistOut,
    AssistRequest,
    DraftApprove,
    DraftCreate,
    DraftEdit,
    DraftOut,
    DraftPage,
    ModerationOut,
    ModerationPage,
    RecommendationPage,
    ReviewRequest,
    RunOut,
    RunPage,
    StatusOut,
)
from quark_sdk.app import DbSession, RuntimeDep
from quark_sdk.auth import Principal, WritingUser, current_user, require_role
from quark_sdk.errors import PermissionDenied
from quark_sdk.routing import GuardedRoute


async def user(principal: Annotated[Principal, Depends(current_user)]) -> Principal:
    if not principal.is_user:
        raise PermissionDenied("a user token is required")
    return principal


def bearer(request: Request) -> str:
    """The caller's own token, forwarded to the blog so it acts with the caller's identity and rights."""
    return request.headers.get("authorization", "").partition(" ")[2].strip()


Runtime = Annotated[AIRuntime, RuntimeDep]
User = Annotated[Principal, Depends(user)]
Moderator = Annotated[Principal, Depends(require_role("moderator"))]
Admin = Annotated[Principal, Depends(require_role("admin"))]
Token = Annotated[str, Depends(bearer)]
Limit = Annotated[int, Query(ge=1, le=100)]
Cursor = Annotated[str | None, Query(max_length=500)]
ItemId = Annotated[str, Path(min_length=1, max_length=64)]
AgentName = Literal["moderation", "tagging", "recommendations", "draft", "assist"]

router = APIRouter(prefix="/api/v1/ai", tags=["ai"], route_class=GuardedRoute)


def draft_out(d: Draft) -> dict[str, Any]:
    return {c: getattr(d, c) for c in DraftOut.model_fields}


def moderation_out(r: ModerationResult, blog_restore: str | None = None) -> dict[str, Any]:
    out = {c: getattr(r, c) for c in ModerationOut.model_fields if c != "blog_restore"}
    out["blog_restore"] = blog_restore
    return out


def run_out(r: AgentRun) -> dict[str, Any]:
    return {c: getattr(r, c) for c in RunOut.model_fields}


# --------------------------------------------------------------------------- status, assist


@router.get("/status", response_model=StatusOut)
async def get_status(rt: Runtime, _: User) -> dict[str, Any]:
    """Which provider answers drafts, whether it writes free text, and the circuit breaker's state."""
    return service.status(rt)


@router.post("/assist", response_model=AssistOut)
async def post_assist(body: AssistRequest, rt: Runtime, principal: WritingUser, session: DbSession) -> dict[str, Any]:
    return await service.assist(rt, session, principal, body.text)


# --------------------------------------------------------------------------- drafts


@router.post("/drafts", status_code=201, response_model=DraftOut)
async def create_draft(
    body: DraftCreate,
    rt: Runtime,
    principal: WritingUser,
    session: DbSession,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key", max_length=200)] = None,
) -> dict[str, Any]:
    """Ask the provider for a draft (pending until its author approves or rejects it)."""
    return draft_out(await service.create_draft(rt, session, principal, body, idempotency_key))


@router.get("/drafts", response_model=DraftPage)
async def list_drafts(
    principal: User,
    session: DbSession,
    limit: Limit = 20,
    cursor: Cursor = None,
    status: Literal["pending", "approved", "rejected"] | None = None,
) -> dict[str, Any]:
    rows, nxt = await service.list_drafts(session, principal, status=status, limit=limit, cursor=cursor)
    return {"items": [draft_out(d) for d in rows], "next_cursor": nxt}


@router.get("/drafts/{draft_id}", response_model=DraftOut)
async def get_draft(draft_id: ItemId, principal: User, session: DbSession) -> dict[str, Any]:
    return draft_out(await service.get_draft(session, principal, draft_id))


@router.patch("/drafts/{draft_id}", response_model=DraftOut)
async def edit_draft(
    draft_id: ItemId, body: DraftEdit, rt: Runtime, principal: WritingUser, session: DbSession
) -> dict[str, Any]:
    return draft_out(await service.edit_draft(rt, session, principal, draft_id, body))


@router.post("/drafts/{draft_id}/approve", response_model=DraftOut)
async def approve_draft(
    draft_id: ItemId,
    rt: Runtime,
    principal: WritingUser,
    token: Token,
    session: DbSession,
    body: DraftApprove | None = None,
) -> dict[str, Any]:
    """The author approves: the draft becomes a *draft* post in the blog (never published from here)."""
    edit = body or DraftApprove()
    return draft_out(await service.approve_draft(rt, session, principal, token, draft_id, edit))


@router.post("/drafts/{draft_id}/reject", response_model=DraftOut)
async def reject_draft(draft_id: ItemId, rt: Runtime, principal: WritingUser, session: DbSession) -> dict[str, Any]:
    return draft_out(await service.reject_draft(rt, session, principal, draft_id))


# --------------------------------------------------------------------------- recommendations


@router.get("/recommendations", response_model=RecommendationPage)
async def get_recommendations(
    rt: Runtime, principal: User, session: DbSession, limit: Limit = 10, cursor: Cursor = None
) -> dict[str, Any]:
    items, nxt, run_id = await service.recommendations(rt, session, principal, limit=limit, cursor=cursor)
    return {"items": items, "next_cursor": nxt, "run_id": run_id}


# --------------------------------------------------------------------------- moderation (moderators)


@router.get("/moderation", response_model=ModerationPage)
async def list_moderation(
    _: Moderator,
    session: DbSession,
    limit: Limit = 50,
    cursor: Cursor = None,
    flagged: bool | None = None,
    reviewed: bool | None = None,
    target_type: Literal["post", "comment"] | None = None,
    target_id: Annotated[str | None, Query(max_length=64)] = None,
) -> dict[str, Any]:
    rows, nxt = await service.list_moderation(
        session,
        flagged=flagged,
        reviewed=reviewed,
        target_type=target_type,
        target_id=target_id,
        limit=limit,
        cursor=cursor,
    )
    return {"items": [moderation_out(r) for r in rows], "next_cursor": nxt}


@router.get("/moderation/{result_id}", response_model=ModerationOut)
async def get_moderation(result_id: ItemId, _: Moderator, session: DbSession) -> dict[str, Any]:
    return moderation_out(await service.get_moderation(session, result_id))


@router.post("/moderation/{result_id}/review", response_model=ModerationOut)
async def review_moderation(
    result_id: ItemId,
    body: ReviewRequest,
    rt: Runtime,
    principal: Moderator,
    _: WritingUser,
    token: Token,
    session: DbSession,
) -> dict[str, Any]:
    row, restore = await service.review(rt, session, principal, token, result_id, body)
    return moderation_out(row, restore)


# --------------------------------------------------------------------------- runs


@router.get("/jobs", response_model=RunPage)
async def my_jobs(
    principal: User,
    session: DbSession,
    limit: Limit = 50,
    cursor: Cursor = None,
    agent: AgentName | None = None,
) -> dict[str, Any]:
    """The caller's own AI activity: drafts, assists, recommendations, and agent runs on their posts."""
    rows, nxt = await service.list_runs(
        session, user_id=principal.subject, agent=agent, outcome=None, input_id=None, limit=limit, cursor=cursor
    )
    return {"items": [run_out(r) for r in rows], "next_cursor": nxt}


@router.get("/runs", response_model=RunPage)
async def list_runs(
    _: Admin,
    session: DbSession,
    limit: Limit = 50,
    cursor: Cursor = None,
    agent: AgentName | None = None,
    outcome: Annotated[str | None, Query(max_length=32)] = None,
    input_id: Annotated[str | None, Query(max_length=128)] = None,
) -> dict[str, Any]:
    rows, nxt = await service.list_runs(
        session, agent=agent, outcome=outcome, input_id=input_id, limit=limit, cursor=cursor
    )
    return {"items": [run_out(r) for r in rows], "next_cursor": nxt}
