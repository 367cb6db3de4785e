"""AI oversight for admins (the console's AI page): the moderation thresholds, the runs' cost and the quotas.

The thresholds live in one database row (`moderation_config`) over the settings' defaults, so every instance
applies an admin's change from its next event on, and the change survives restarts. Each instance keeps
the `Moderator` built for the values it last saw and rebuilds it only when the row changes.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from quark_ai import drafts
from quark_ai.classifier import Moderator
from quark_ai.models import AgentRun, Draft, ModerationConfig
from quark_ai.runtime import AIRuntime
from quark_ai.schemas import (
    QuotaOut,
    RuleOut,
    ThresholdsChanged,
    ThresholdsIn,
    ThresholdsOut,
    UsageOut,
    UsageRow,
)
from quark_ai.settings import ModerationRule
from quark_sdk.errors import InvalidInput
from quark_sdk.outbox import add_event

CONFIG_ID = 1


def _rules(rt: AIRuntime, scores: dict[str, float]) -> list[ModerationRule]:
    return [r.model_copy(update={"score": scores[r.name]}) if r.name in scores else r
            for r in rt.settings.moderation_rules]


async def moderator(rt: AIRuntime, session: AsyncSession) -> Moderator:
    """Inside the caller's transaction: the moderator for the thresholds in force now."""
    row = await session.get(ModerationConfig, CONFIG_ID)
    threshold = row.threshold if row else rt.settings.moderation_threshold
    scores = dict(row.rule_scores) if row else {}
    current = rt.moderator
    if current.threshold != threshold or [r.score for r in current.rules] != [r.score for r in _rules(rt, scores)]:
        current = Moderator(threshold, _rules(rt, scores), rt.settings.moderation_max_chars)
        rt.moderator = current
    return current


def _out(rt: AIRuntime, row: ModerationConfig | None) -> ThresholdsOut:
    scores = dict(row.rule_scores) if row else {}
    return ThresholdsOut(
        threshold=row.threshold if row else rt.settings.moderation_threshold,
        default_threshold=rt.settings.moderation_threshold,
        rules=[RuleOut(name=r.name, label=r.label, score=scores.get(r.name, r.score), default_score=r.score)
               for r in rt.settings.moderation_rules],
        updated_by=row.updated_by if row else None, updated_at=row.updated_at if row else None,
        reason=row.reason if row else None)


async def get_thresholds(rt: AIRuntime, session: AsyncSession) -> ThresholdsOut:
    async with session.begin():
        return _out(rt, await session.get(ModerationConfig, CONFIG_ID))


async def set_thresholds(rt: AIRuntime, session: AsyncSession, actor_id: str, body: ThresholdsIn) -> ThresholdsOut:
    """Change the thresholds (audited by `quark.ai.thresholds_changed`); an unchanged value emits nothing."""
    known = {r.name for r in rt.settings.moderation_rules}
    unknown = sorted(set(body.rule_scores) - known)
    if unknown:
        raise InvalidInput(f"unknown rule {unknown[0][:64]!r}; rules are {', '.join(sorted(known))}",
                           field="rule_scores")
    if any(not 0.0 <= v <= 1.0 for v in body.rule_scores.values()):
        raise InvalidInput("a rule's score is between 0 and 1", field="rule_scores")
    reason = (body.reason or "").strip() or None
    async with session.begin():
        row = await session.get(ModerationConfig, CONFIG_ID, with_for_update=True)
        before_threshold = row.threshold if row else rt.settings.moderation_threshold
        before_scores = dict(row.rule_scores) if row else {}
        defaults = {r.name: r.score for r in rt.settings.moderation_rules}
        # Scores equal to the default are not kept as overrides.
        scores = {**before_scores, **body.rule_scores}
        scores = {k: v for k, v in sorted(scores.items()) if v != defaults[k]}
        if body.threshold == before_threshold and scores == before_scores:
            return _out(rt, row)
        if row is None:
            row = ModerationConfig(id=CONFIG_ID, threshold=body.threshold, rule_scores=scores,
                                   updated_by=actor_id[:64], reason=reason, updated_at=rt.now())
            session.add(row)
        else:
            row.threshold, row.rule_scores = body.threshold, scores
            row.updated_by, row.reason, row.updated_at = actor_id[:64], reason, rt.now()
        await add_event(session, ThresholdsChanged(actor_id=actor_id, reason=reason, threshold=body.threshold,
                                                   previous_threshold=before_threshold, rule_scores=scores,
                                                   previous_rule_scores=before_scores), subject="moderation")
        out = _out(rt, row)
    return out


async def usage(rt: AIRuntime, session: AsyncSession, *, hours: int) -> UsageOut:
    """Runs per agent, provider and outcome over the last `hours`, the per-user quotas, drafts by state."""
    since: datetime = rt.now() - timedelta(hours=hours)
    stmt = (select(AgentRun.agent, AgentRun.provider, AgentRun.outcome, func.count(),
                   func.avg(AgentRun.latency_ms), func.max(AgentRun.latency_ms))
            .where(AgentRun.created_at >= since)
            .group_by(AgentRun.agent, AgentRun.provider, AgentRun.outcome)
            .order_by(AgentRun.agent, AgentRun.provider, AgentRun.outcome))
    async with session.begin():
        rows: list[Any] = list((await session.execute(stmt)).all())
        counted = await session.execute(select(Draft.status, func.count()).group_by(Draft.status))
        by_status: dict[str, int] = dict(counted.all())
    s = rt.settings
    state = rt.provider.state()
    return UsageOut(
        since=since,
        rows=[UsageRow(agent=a, provider=p, outcome=o, runs=int(n), avg_latency_ms=round(float(avg or 0), 3),
                       max_latency_ms=round(float(mx or 0), 3)) for a, p, o, n, avg, mx in rows],
        quotas=[QuotaOut(name="draft", limit=s.draft_quota, window_seconds=s.draft_quota_window),
                QuotaOut(name="assist", limit=s.assist_quota, window_seconds=s.assist_quota_window)],
        drafts={k: int(v) for k, v in by_status.items()},
        provider=str(state["provider"]), model=str(state["model"]))


async def list_all_drafts(session: AsyncSession, *, status: str | None, limit: int,
                          cursor: str | None) -> tuple[list[Draft], str | None]:
    """Every person's drafts, newest first (admins: what is waiting for its author's approval)."""
    return await drafts.list_drafts(session, None, status=status, limit=limit, cursor=cursor)
