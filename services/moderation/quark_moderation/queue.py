"""The queue: signals (user reports, AI flags) arrive from the owning modules' events and gather into cases,
one open case per target; moderators read the cases oldest first."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import exists, select, tuple_
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from quark_moderation.models import Case, Decision, Signal
from quark_moderation.runtime import ModerationRuntime
from quark_moderation.schemas import ACTIONS_BY_KIND, MODULE_OF_KIND
from quark_sdk.errors import NotFound
from quark_sdk.pagination import decode_cursor, encode_cursor, page_of


@dataclass
class Incoming:
    """One signal as the consumers read it from an event, whatever module sent it."""

    kind: str
    target_id: str
    source: str  # user | ai
    external_id: str
    reason: str
    author_id: str | None = None
    reporter_id: str | None = None
    score: float | None = None
    labels: list[str] = field(default_factory=list)
    context: dict[str, Any] = field(default_factory=dict)


def _clean(text: str | None, limit: int) -> str:
    """Text as stored: no NULs or lone surrogates (PostgreSQL refuses them), control characters as spaces."""
    if not text:
        return ""
    out = "".join(c if (c >= " " or c in "\n\t") and not 0xD800 <= ord(c) <= 0xDFFF else " " for c in text)
    return out.strip()[:limit]


async def _open_case(rt: ModerationRuntime, session: AsyncSession, sig: Incoming) -> Case:
    """The open case of the target, created if there is none (concurrent creators meet on the unique index)."""
    now = rt.now()
    await session.execute(
        insert(Case)
        .values(id=uuid.uuid4(), kind=sig.kind, target_id=sig.target_id, module=MODULE_OF_KIND[sig.kind],
                author_id=sig.author_id, state="open", context={}, reports=0, flags=0, created_at=now,
                updated_at=now)
        .on_conflict_do_nothing(index_elements=["kind", "target_id"], index_where=Case.state == "open")
    )
    case = await session.scalar(
        select(Case).where(Case.kind == sig.kind, Case.target_id == sig.target_id, Case.state == "open")
        .with_for_update()
    )
    assert case is not None  # inserted or already there, and only a decision (same lock) closes it
    return case


async def add_signal(rt: ModerationRuntime, session: AsyncSession, sig: Incoming) -> Signal | None:
    """File one signal in its target's open case (inside the consumer's transaction).

    Idempotent: a signal already filed (same external id), or a second report of the same person on the same
    open case, changes nothing and returns None."""
    if await session.scalar(select(Signal.id).where(Signal.source == sig.source,
                                                    Signal.external_id == sig.external_id)) is not None:
        return None
    case = await _open_case(rt, session, sig)
    row = Signal(id=uuid.uuid4(), case_id=case.id, source=sig.source, reporter_id=sig.reporter_id,
                 reason=_clean(sig.reason, 1000), score=sig.score, labels=[_clean(x, 64) for x in sig.labels[:20]],
                 external_id=sig.external_id, created_at=rt.now())
    inserted = await session.scalar(
        insert(Signal).values(
            id=row.id, case_id=row.case_id, source=row.source, reporter_id=row.reporter_id, reason=row.reason,
            score=row.score, labels=row.labels, external_id=row.external_id, created_at=row.created_at,
        ).on_conflict_do_nothing().returning(Signal.id)
    )
    if inserted is None:
        return None
    if sig.source == "user":
        case.reports += 1
    else:
        case.flags += 1
        if sig.score is not None:
            case.max_score = max(case.max_score or 0.0, sig.score)
    if case.author_id is None and sig.author_id:
        case.author_id = sig.author_id
    # The first snapshot stays (it is what was reported); later signals only add what it lacked.
    case.context = {**sig.context, **(case.context or {})}
    case.updated_at = rt.now()
    return row


# --------------------------------------------------------------------------- reads


def preview_of(case: Case) -> str:
    """One line for the list: what the target said, from the snapshot taken when it was reported."""
    ctx = case.context or {}
    if case.kind == "chat_message":
        for line in ctx.get("thread") or []:
            if line.get("reported"):
                return str(line.get("body") or "")[:200]
    if case.kind == "profile":
        name = ctx.get("username") or case.target_id
        return f"@{name}: {ctx.get('display_name') or ''} {ctx.get('bio') or ''}".strip()[:200]
    parts = [str(ctx[k]) for k in ("title", "excerpt") if ctx.get(k)] or [str(ctx.get("preview") or "")]
    return ": ".join(parts)[:200]


def summary(case: Case) -> dict[str, Any]:
    return {
        "id": case.id, "kind": case.kind, "target_id": case.target_id, "module": case.module,
        "author_id": case.author_id, "state": case.state, "reports": case.reports, "flags": case.flags,
        "max_score": case.max_score, "preview": preview_of(case), "created_at": case.created_at,
        "updated_at": case.updated_at, "closed_at": case.closed_at,
    }


async def list_cases(session: AsyncSession, *, state: str, kind: str | None, source: str | None, limit: int,
                     cursor: str | None) -> tuple[list[dict[str, Any]], str | None]:
    """Cases oldest first (the longest waiting on top), filtered by state, kind and signal source."""
    stmt = select(Case).where(Case.state == state)
    if kind is not None:
        stmt = stmt.where(Case.kind == kind)
    if source is not None:
        stmt = stmt.where(exists().where(Signal.case_id == Case.id, Signal.source == source))
    if cursor:
        after, ident = decode_cursor(cursor, (datetime, uuid.UUID))
        stmt = stmt.where(tuple_(Case.created_at, Case.id) > tuple_(after, ident))
    async with session.begin():
        rows = list((await session.scalars(stmt.order_by(Case.created_at, Case.id).limit(limit + 1))).all())
    items = [summary(c) for c in rows]
    return page_of(items, limit, lambda c: encode_cursor(c["created_at"], c["id"]))


async def get_case(session: AsyncSession, case_id: uuid.UUID) -> dict[str, Any]:
    async with session.begin():
        case = await session.get(Case, case_id)
        if case is None:
            raise NotFound("no such case")
        signals = (await session.scalars(
            select(Signal).where(Signal.case_id == case_id).order_by(Signal.created_at, Signal.id))).all()
        decisions = (await session.scalars(
            select(Decision).where(Decision.case_id == case_id).order_by(Decision.created_at))).all()
    done = {d.action for d in decisions}
    allowed = [] if case.state == "dismissed" else [
        a for a in ACTIONS_BY_KIND[case.kind]
        if a not in done and not (a == "dismiss" and case.state != "open") and not (a == "hide" and "delete" in done)
    ]
    return {
        **summary(case), "context": case.context or {}, "allowed_actions": allowed,
        "signals": [{c: getattr(s, c) for c in ("id", "source", "reporter_id", "reason", "score", "labels",
                                                 "created_at")} for s in signals],
        "decisions": [decision_out(d) for d in decisions],
    }


def decision_out(d: Decision) -> dict[str, Any]:
    return {c: getattr(d, c) for c in ("id", "case_id", "action", "reason", "moderator_id", "duration_seconds",
                                       "until", "created_at")}
