"""Business logic behind the HTTP API besides drafts (drafts.py): recommendations, moderation review, runs.

Plain functions over a session and the runtime; no HTTP types. Errors are the SDK's exceptions.
Callers pass ids (routes turn principals into them).
"""

from __future__ import annotations

import time
import uuid
from datetime import datetime

import httpx
from sqlalchemy import select, tuple_
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from quark_ai import agents, audience, textutil
from quark_ai.classifier import model_name
from quark_ai.common import parse_uuid
from quark_ai.models import AgentRun, Document, ModerationResult, Reaction, UserSuggestion
from quark_ai.runtime import AIRuntime
from quark_ai.schemas import (
    ModerationReviewed,
    QueueDecision,
    RecommendationOut,
    ReviewRequest,
    StatusOut,
    SuggestionGenerated,
)
from quark_sdk.errors import Conflict, InvalidInput, NotFound
from quark_sdk.outbox import add_event
from quark_sdk.pagination import INVALID_CURSOR, decode_cursor, encode_cursor, page_of

RANK_SLACK = 50  # extra candidates ranked, in case some were hidden or deleted since the last fit
MAX_OFFSET = 10_000


# --------------------------------------------------------------------------- recommendations


async def recommendations(
    rt: AIRuntime, session: AsyncSession, uid: str, *, limit: int, cursor: str | None
) -> tuple[list[RecommendationOut], str | None, uuid.UUID]:
    """ "You may like": TF-IDF similarity to the posts the user reacted to, plus follows and recency."""
    offset = decode_cursor(cursor, (int,))[0] if cursor else 0
    if not 0 <= offset <= MAX_OFFSET:
        raise InvalidInput(INVALID_CURSOR, field="cursor")
    started = time.perf_counter()
    async with session.begin():
        liked: dict[str, float] = {}
        for post_id, kind in (
            await session.execute(select(Reaction.post_id, Reaction.kind).where(Reaction.user_id == uid))
        ).all():
            liked[post_id] = liked.get(post_id, 0.0) + (0.3 if kind in ("angry", "sad") else 1.0)
        viewer = await audience.audience_of(session, uid)
        fitted, ranked = await agents.ranked(rt, session, viewer=viewer, liked=liked,
                                             limit=offset + limit + 1 + RANK_SLACK)
        # The model may be up to `corpus_refresh` old: judge each candidate by its current state (hidden,
        # unpublished, deleted or made followers-only since), with the viewer's current relations.
        live = await agents.visible_now(session, viewer, [x.post_id for x in ranked])
        ranked = [x for x in ranked if x.post_id in live]
        page = ranked[offset : offset + limit]
        next_cursor = encode_cursor(offset + limit) if len(ranked) > offset + limit else None
        run = agents.record_run(
            session,
            agent="recommendations",
            input_type="user",
            input_id=uid,
            user_id=uid,
            provider="local",
            model="tfidf-cosine",
            started=started,
            outcome="ok" if page else "skipped",
            detail={
                "signals": {"reactions": len(liked), "follows": len(viewer.followees)},
                "corpus": fitted.size,
                "offset": offset,
                "items": [x.post_id for x in page],
            },
        )
        if offset == 0:
            ids = [x.post_id for x in page]
            previous = await session.get(UserSuggestion, uid, with_for_update=True)
            if ids and (previous is None or previous.post_ids != ids):
                await session.execute(
                    insert(UserSuggestion)
                    .values(user_id=uid, post_ids=ids, generated_at=rt.now())
                    .on_conflict_do_update(
                        index_elements=[UserSuggestion.user_id], set_={"post_ids": ids, "generated_at": rt.now()}
                    )
                )
                await add_event(
                    session,
                    SuggestionGenerated(
                        kind="recommendations",
                        user_id=uid,
                        target_type="user",
                        target_id=uid,
                        items=ids,
                        scores=[x.score for x in page],
                        run_id=str(run.id),
                    ),
                    subject=uid,
                )
        docs = {
            d.post_id: d
            for d in (
                await session.scalars(select(Document).where(Document.post_id.in_([x.post_id for x in page])))
            ).all()
        }
    items = []
    for x in page:
        d = docs.get(x.post_id)
        items.append(
            RecommendationOut(
                post_id=x.post_id,
                author_id=x.author_id,
                title=x.title,
                slug=d.slug if d else "",
                excerpt=d.excerpt if d else "",
                tags=list(x.tags),
                published_at=x.published_at,
                score=x.score,
                similarity=x.similarity,
                reasons=list(x.reasons),
            )
        )
    return items, next_cursor, run.id


# --------------------------------------------------------------------------- moderation review


async def list_moderation(
    session: AsyncSession,
    *,
    flagged: bool | None,
    reviewed: bool | None,
    target_type: str | None,
    target_id: str | None,
    limit: int,
    cursor: str | None,
) -> tuple[list[ModerationResult], str | None]:
    stmt = select(ModerationResult)
    if flagged is not None:
        stmt = stmt.where(ModerationResult.flagged.is_(flagged))
    if reviewed is not None:
        stmt = stmt.where(ModerationResult.decision.isnot(None) if reviewed else ModerationResult.decision.is_(None))
    if target_type:
        stmt = stmt.where(ModerationResult.target_type == target_type)
    if target_id:
        stmt = stmt.where(ModerationResult.target_id == target_id)
    if cursor:
        at, ident = decode_cursor(cursor, (datetime, uuid.UUID))
        stmt = stmt.where(tuple_(ModerationResult.created_at, ModerationResult.id) < tuple_(at, ident))
    async with session.begin():
        rows = list(
            (
                await session.scalars(
                    stmt.order_by(ModerationResult.created_at.desc(), ModerationResult.id.desc()).limit(limit + 1)
                )
            ).all()
        )
    return page_of(rows, limit, lambda r: encode_cursor(r.created_at, r.id))


async def get_moderation(session: AsyncSession, result_id: str) -> ModerationResult:
    ident = parse_uuid(result_id)
    async with session.begin():
        row = await session.get(ModerationResult, ident) if ident else None
    if row is None:
        raise NotFound("moderation result not found")
    return row


async def review(
    rt: AIRuntime, session: AsyncSession, moderator: str, token: str, result_id: str, body: ReviewRequest
) -> tuple[ModerationResult, str | None]:
    """A moderator upholds or overrules a verdict (recorded, published); an overruled flag is restored in blog."""
    ident = parse_uuid(result_id)
    reason = textutil.clean(body.reason).strip()[:500] or None if body.reason else None
    async with session.begin():
        row = await session.get(ModerationResult, ident, with_for_update=True) if ident else None
        if row is None:
            raise NotFound("moderation result not found")
        if row.decision is not None:
            raise Conflict(f"already {row.decision} by a moderator", code="already-reviewed")
        row.decision, row.decided_by, row.decided_at, row.decision_reason = body.decision, moderator, rt.now(), reason
        await add_event(
            session,
            ModerationReviewed(
                result_id=str(row.id),
                run_id=str(row.run_id),
                target_type=row.target_type,
                target_id=row.target_id,
                flagged=row.flagged,
                decision=body.decision,
                moderator_id=moderator,
                reason=reason,
            ),
            subject=row.target_id,
        )
    restore: str | None = None
    if body.decision == "overruled" and row.flagged:
        restore = await _blog_restore(rt, token, row, reason) if body.restore else "skipped"
    return row, restore


async def apply_queue_decision(rt: AIRuntime, session: AsyncSession, d: QueueDecision) -> None:
    """The moderation queue decided a case holding automatic flags: each flag's verdict is reviewed — upheld
    when the moderator acted on the content or its author, overruled when the case was dismissed (inside the
    consumer's transaction; a verdict already reviewed stays as it is)."""
    decision = "overruled" if d.action == "dismiss" else "upheld"
    for run_id in d.run_ids:
        ident = parse_uuid(run_id)
        if ident is None:
            continue
        rows = (await session.scalars(select(ModerationResult).where(
            ModerationResult.run_id == ident, ModerationResult.decision.is_(None)).with_for_update())).all()
        for row in rows:
            reason = textutil.clean(d.reason).strip()[:500] or None
            row.decision, row.decided_by, row.decided_at, row.decision_reason = (
                decision, d.moderator_id[:64], rt.now(), reason)
            await add_event(session, ModerationReviewed(
                result_id=str(row.id), run_id=str(row.run_id), target_type=row.target_type,
                target_id=row.target_id, flagged=row.flagged, decision=decision, moderator_id=d.moderator_id,
                reason=reason), subject=row.target_id)


async def _blog_restore(rt: AIRuntime, token: str, row: ModerationResult, reason: str | None) -> str:
    """Restore the target in the blog with the moderator's own token (the blog checks the role again)."""
    path = f"/api/v1/{'posts' if row.target_type == 'post' else 'comments'}/{row.target_id}/restore"
    try:
        resp = await rt.blog_http.post(
            path,
            json={"reason": reason or "automatic flag overruled by a moderator"},
            headers={"Authorization": f"Bearer {token}"},
        )
    except httpx.HTTPError as exc:
        return f"failed: blog unreachable ({type(exc).__name__}); restore it in the blog's moderation queue"
    if resp.status_code == 200:
        return "restored"
    return f"failed: the blog answered {resp.status_code}; restore it in the blog's moderation queue"


# --------------------------------------------------------------------------- runs, assist, status


async def list_runs(
    session: AsyncSession,
    *,
    user_id: str | None = None,
    agent: str | None,
    outcome: str | None,
    input_id: str | None,
    limit: int,
    cursor: str | None,
) -> tuple[list[AgentRun], str | None]:
    stmt = select(AgentRun)
    if user_id:
        stmt = stmt.where(AgentRun.user_id == user_id)
    if agent:
        stmt = stmt.where(AgentRun.agent == agent)
    if outcome:
        stmt = stmt.where(AgentRun.outcome == outcome)
    if input_id:
        stmt = stmt.where(AgentRun.input_id == input_id)
    if cursor:
        at, ident = decode_cursor(cursor, (datetime, uuid.UUID))
        stmt = stmt.where(tuple_(AgentRun.created_at, AgentRun.id) < tuple_(at, ident))
    async with session.begin():
        rows = list(
            (
                await session.scalars(stmt.order_by(AgentRun.created_at.desc(), AgentRun.id.desc()).limit(limit + 1))
            ).all()
        )
    return page_of(rows, limit, lambda r: encode_cursor(r.created_at, r.id))


def status(rt: AIRuntime) -> StatusOut:
    state = rt.provider.state()
    return StatusOut(
        provider=state["provider"],
        model=state["model"],
        generates=state["generates"],
        breaker=state.get("breaker", "closed"),
        notice=state.get("notice"),
        moderation_model=model_name(),
        moderation_threshold=rt.settings.moderation_threshold,
    )
