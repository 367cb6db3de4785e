"""HTTP routes of the AI service (prefix /api/v1/ai): thin, they authorise and call service functions.

Every request body is capped (`max_request_bytes`, 413) before it is parsed. Draft routes are the
author's own (someone else's draft is a 404); moderation review needs a moderator; the run log
needs an admin, and so does the oversight (`/admin/...`: thresholds, usage, everyone's drafts).
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Header, Path, Query, Request

from quark_ai import drafts, oversight, service
from quark_ai.runtime import AIRuntime
from quark_ai.schemas import (
    AdminDraftOut,
    AdminDraftPage,
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
    ThresholdsIn,
    ThresholdsOut,
    UsageOut,
)
from quark_sdk.app import DbSession, RuntimeDep
from quark_sdk.auth import Principal, UserId, UserPrincipal, WritingUser, require_role
from quark_sdk.pagination import Cursor, Limit
from quark_sdk.routing import GuardedRoute


def bearer(request: Request) -> str:
    """The caller's own token, forwarded to the blog so it acts with the caller's identity and rights."""
    return request.headers.get("authorization", "").partition(" ")[2].strip()


Runtime = Annotated[AIRuntime, RuntimeDep]
Moderator = Annotated[Principal, Depends(require_role("moderator"))]
Admin = Annotated[Principal, Depends(require_role("admin"))]
Token = Annotated[str, Depends(bearer)]
ItemId = Annotated[str, Path(min_length=1, max_length=64)]
AgentName = Literal["moderation", "tagging", "recommendations", "draft", "assist"]

router = APIRouter(prefix="/api/v1/ai", tags=["ai"], route_class=GuardedRoute)


# --------------------------------------------------------------------------- status, assist


@router.get("/status")
async def get_status(rt: Runtime, _: UserPrincipal) -> StatusOut:
    """Which provider answers drafts, whether it writes free text, and the circuit breaker's state."""
    return service.status(rt)


@router.post("/assist")
async def post_assist(
    body: AssistRequest, rt: Runtime, _: WritingUser, user_id: UserId, session: DbSession
) -> AssistOut:
    return await drafts.assist(rt, session, str(user_id), body.text)


# --------------------------------------------------------------------------- drafts


@router.post("/drafts", status_code=201)
async def create_draft(
    body: DraftCreate,
    rt: Runtime,
    _: WritingUser,
    user_id: UserId,
    session: DbSession,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key", max_length=200)] = None,
) -> DraftOut:
    """Ask the provider for a draft (pending until its author approves or rejects it)."""
    return DraftOut.model_validate(await drafts.create_draft(rt, session, str(user_id), body, idempotency_key))


@router.get("/drafts")
async def list_drafts(
    user_id: UserId,
    session: DbSession,
    limit: Limit = 20,
    cursor: Cursor = None,
    status: Literal["pending", "approved", "rejected"] | None = None,
) -> DraftPage:
    rows, nxt = await drafts.list_drafts(session, str(user_id), status=status, limit=limit, cursor=cursor)
    return DraftPage(items=[DraftOut.model_validate(d) for d in rows], next_cursor=nxt)


@router.get("/drafts/{draft_id}")
async def get_draft(draft_id: ItemId, user_id: UserId, session: DbSession) -> DraftOut:
    return DraftOut.model_validate(await drafts.get_draft(session, str(user_id), draft_id))


@router.patch("/drafts/{draft_id}")
async def edit_draft(
    draft_id: ItemId, body: DraftEdit, rt: Runtime, _: WritingUser, user_id: UserId, session: DbSession
) -> DraftOut:
    return DraftOut.model_validate(await drafts.edit_draft(rt, session, str(user_id), draft_id, body))


@router.post("/drafts/{draft_id}/approve")
async def approve_draft(
    draft_id: ItemId,
    rt: Runtime,
    _: WritingUser,
    user_id: UserId,
    token: Token,
    session: DbSession,
    body: DraftApprove | None = None,
) -> DraftOut:
    """The author approves: the draft becomes a *draft* post in the blog (never published from here)."""
    edit = body or DraftApprove()
    return DraftOut.model_validate(await drafts.approve_draft(rt, session, str(user_id), token, draft_id, edit))


@router.post("/drafts/{draft_id}/reject")
async def reject_draft(draft_id: ItemId, rt: Runtime, _: WritingUser, user_id: UserId, session: DbSession) -> DraftOut:
    return DraftOut.model_validate(await drafts.reject_draft(rt, session, str(user_id), draft_id))


# --------------------------------------------------------------------------- recommendations


@router.get("/recommendations")
async def get_recommendations(
    rt: Runtime, user_id: UserId, session: DbSession, limit: Limit = 10, cursor: Cursor = None
) -> RecommendationPage:
    items, nxt, run_id = await service.recommendations(rt, session, str(user_id), limit=limit, cursor=cursor)
    return RecommendationPage(items=items, next_cursor=nxt, run_id=run_id)


# --------------------------------------------------------------------------- moderation (moderators)


@router.get("/moderation")
async def list_moderation(
    _: Moderator,
    session: DbSession,
    limit: Limit = 50,
    cursor: Cursor = None,
    flagged: bool | None = None,
    reviewed: bool | None = None,
    target_type: Literal["post", "comment"] | None = None,
    target_id: Annotated[str | None, Query(max_length=64)] = None,
) -> ModerationPage:
    rows, nxt = await service.list_moderation(
        session,
        flagged=flagged,
        reviewed=reviewed,
        target_type=target_type,
        target_id=target_id,
        limit=limit,
        cursor=cursor,
    )
    return ModerationPage(items=[ModerationOut.model_validate(r) for r in rows], next_cursor=nxt)


@router.get("/moderation/{result_id}")
async def get_moderation(result_id: ItemId, _: Moderator, session: DbSession) -> ModerationOut:
    return ModerationOut.model_validate(await service.get_moderation(session, result_id))


@router.post("/moderation/{result_id}/review")
async def review_moderation(
    result_id: ItemId,
    body: ReviewRequest,
    rt: Runtime,
    principal: Moderator,
    _: WritingUser,
    token: Token,
    session: DbSession,
) -> ModerationOut:
    row, restore = await service.review(rt, session, principal.subject, token, result_id, body)
    return ModerationOut.model_validate(row).model_copy(update={"blog_restore": restore})


# --------------------------------------------------------------------------- runs


@router.get("/jobs")
async def my_jobs(
    user_id: UserId,
    session: DbSession,
    limit: Limit = 50,
    cursor: Cursor = None,
    agent: AgentName | None = None,
) -> RunPage:
    """The caller's own AI activity: drafts, assists, recommendations, and agent runs on their posts."""
    rows, nxt = await service.list_runs(
        session, user_id=str(user_id), agent=agent, outcome=None, input_id=None, limit=limit, cursor=cursor
    )
    return RunPage(items=[RunOut.model_validate(r) for r in rows], next_cursor=nxt)


@router.get("/runs")
async def list_runs(
    _: Admin,
    session: DbSession,
    limit: Limit = 50,
    cursor: Cursor = None,
    agent: AgentName | None = None,
    outcome: Annotated[str | None, Query(max_length=32)] = None,
    input_id: Annotated[str | None, Query(max_length=128)] = None,
) -> RunPage:
    rows, nxt = await service.list_runs(
        session, agent=agent, outcome=outcome, input_id=input_id, limit=limit, cursor=cursor
    )
    return RunPage(items=[RunOut.model_validate(r) for r in rows], next_cursor=nxt)


# --------------------------------------------------------------------------- oversight (admins)


@router.get("/admin/thresholds")
async def get_thresholds(_: Admin, rt: Runtime, session: DbSession) -> ThresholdsOut:
    """The moderation threshold and the rules' scores in force (and their defaults)."""
    return await oversight.get_thresholds(rt, session)


@router.put("/admin/thresholds")
async def put_thresholds(body: ThresholdsIn, admin: Admin, _: WritingUser, rt: Runtime,
                         session: DbSession) -> ThresholdsOut:
    """Change the thresholds; audited by `quark.ai.thresholds_changed` (actor, reason, before, after)."""
    return await oversight.set_thresholds(rt, session, admin.subject, body)


@router.get("/admin/usage")
async def get_usage(_: Admin, rt: Runtime, session: DbSession,
                    hours: Annotated[int, Query(ge=1, le=24 * 90)] = 24) -> UsageOut:
    """Runs per agent/provider/outcome with latency (the AI's cost), the quotas, drafts by state."""
    return await oversight.usage(rt, session, hours=hours)


@router.get("/admin/drafts")
async def all_drafts(
    _: Admin,
    session: DbSession,
    limit: Limit = 20,
    cursor: Cursor = None,
    status: Literal["pending", "approved", "rejected"] | None = None,
) -> AdminDraftPage:
    rows, nxt = await oversight.list_all_drafts(session, status=status, limit=limit, cursor=cursor)
    return AdminDraftPage(items=[AdminDraftOut.model_validate(d) for d in rows], next_cursor=nxt)
