"""Moderators' decisions: a small state machine per case, idempotent, published to the owning module
(`quark.moderation.decided`, through the outbox) and written to the audit log in the same transaction.

    open --dismiss--> dismissed (final)
    open --hide|delete|warn|suspend--> actioned --(further actions, each at most once; no dismiss)--> actioned
"""

from __future__ import annotations

import uuid
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from quark_moderation import audit
from quark_moderation.models import Case, Decision, Signal
from quark_moderation.queue import _clean
from quark_moderation.runtime import ModerationRuntime
from quark_moderation.schemas import ACTIONS_BY_KIND, DecisionRequest, ModerationDecided
from quark_sdk.auth import Principal
from quark_sdk.errors import Conflict, InvalidInput, NotFound
from quark_sdk.outbox import add_event


async def check_rate(rt: ModerationRuntime, moderator_id: str) -> None:
    limit = rt.settings.decision_rate_limit
    await rt.limiter.check(f"decide:{moderator_id}", limit=limit, window=60,
                           detail=f"too many decisions: at most {limit} per minute")


async def decide(rt: ModerationRuntime, session: AsyncSession, moderator: Principal, case_id: uuid.UUID,
                 req: DecisionRequest) -> tuple[Decision, bool]:
    """(the decision, whether it is new). Replaying a decision (same `decision_id`, or the same action on the
    same case) returns the first one and publishes nothing again."""
    reason = _clean(req.reason, 1000)
    if not reason:
        raise InvalidInput("reason is empty", field="reason")
    await check_rate(rt, moderator.subject)
    async with session.begin():
        if req.decision_id is not None:
            earlier = await session.get(Decision, req.decision_id)
            if earlier is not None:
                if earlier.case_id != case_id or earlier.action != req.action:
                    raise Conflict("this decision id was used for another decision", code="decision-id-reused")
                return earlier, False
        case = await session.scalar(select(Case).where(Case.id == case_id).with_for_update())
        if case is None:
            raise NotFound("no such case")
        if req.action not in ACTIONS_BY_KIND[case.kind]:
            allowed = ", ".join(ACTIONS_BY_KIND[case.kind])
            raise InvalidInput(f"a {case.kind} can be: {allowed}", field="action")
        done = {d.action: d for d in (await session.scalars(
            select(Decision).where(Decision.case_id == case.id))).all()}
        if req.action in done:
            return done[req.action], False
        if case.state == "dismissed":
            raise Conflict("the case was dismissed", code="case-closed")
        if req.action == "dismiss" and case.state != "open":
            raise Conflict("the case was already acted on; it cannot be dismissed", code="case-closed")
        if req.action == "hide" and "delete" in done:
            raise Conflict("the content was deleted", code="case-closed")
        duration: int | None = None
        until = None
        now = rt.now()
        if req.action in ("warn", "suspend"):
            if case.author_id is None:
                raise Conflict("the author of this content is not known", code="author-unknown")
            if case.author_id == moderator.subject:
                raise InvalidInput("you cannot sanction yourself", field="action")
        if req.action == "suspend":
            if req.duration_hours is None:
                raise InvalidInput("a suspension needs duration_hours", field="duration_hours")
            if req.duration_hours > rt.settings.max_suspension_days * 24:
                raise InvalidInput(f"at most {rt.settings.max_suspension_days} days", field="duration_hours")
            duration = req.duration_hours * 3600
            until = now + timedelta(seconds=duration)
        elif req.duration_hours is not None:
            raise InvalidInput("duration_hours is only for suspend", field="duration_hours")
        row = Decision(id=req.decision_id or uuid.uuid4(), case_id=case.id, action=req.action, reason=reason,
                       moderator_id=moderator.subject, duration_seconds=duration, until=until, created_at=now)
        session.add(row)
        if case.state == "open":
            case.state = "dismissed" if req.action == "dismiss" else "actioned"
            case.closed_at, case.closed_by = now, moderator.subject
        run_ids = list((await session.scalars(
            select(Signal.external_id).where(Signal.case_id == case.id, Signal.source == "ai"))).all())
        await session.flush()
        await add_event(session, ModerationDecided(
            decision_id=str(row.id), case_id=str(case.id), kind=case.kind, target_id=case.target_id,
            module=case.module, author_id=case.author_id, action=req.action, reason=reason,
            moderator_id=moderator.subject, duration_seconds=duration, until=until, flagged_by_ai=bool(run_ids),
            run_ids=run_ids, decided_at=now,
        ), subject=case.target_id)
        await audit.record(session, at=now, actor_id=moderator.subject, action=f"moderation.{req.action}",
                           module="moderation", target_kind=case.kind, target_id=case.target_id, reason=reason,
                           details={"case_id": str(case.id), "decision_id": str(row.id), "author_id": case.author_id,
                                    "duration_seconds": duration, "until": until.isoformat() if until else None})
    return row, True
