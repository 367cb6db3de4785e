"""The agents driven by events: moderation, tagging, recommendations; and the replica they read.

Every function here runs inside the consumer's transaction (the session is already in one), so
the run record, the verdict and the outgoing event commit together with the inbox entry. No
agent calls an LLM: they keep up whatever the provider's state. Nothing here writes to the blog
except through `quark.ai.moderation_flagged`, whose only effect is hiding pending human review.
"""

from __future__ import annotations

import time
import uuid
from datetime import datetime
from typing import Any

from prometheus_client import Counter, Histogram
from sqlalchemy import delete, func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from quark_ai import audience, oversight, textutil
from quark_ai.classifier import model_name
from quark_ai.cpu import Corpus, WorkerDied
from quark_ai.models import AgentRun, Document, Draft, Follow, ModerationResult, Reaction, UserSuggestion
from quark_ai.recommend import Doc, Scored
from quark_ai.runtime import AIRuntime
from quark_ai.schemas import CommentContent, ModerationFlagged, PostContent, SuggestionGenerated
from quark_sdk.outbox import OutboxBatch

AGENT_RUNS = Counter(
    "quark_ai_agent_runs_total",
    "Runs of the AI service's agents, by agent, provider and outcome.",
    ["service", "agent", "provider", "outcome"],
)
AGENT_LATENCY = Histogram(
    "quark_ai_agent_run_duration_seconds",
    "Time an agent run took (moderation, tagging, recommendations, draft, assist).",
    ["service", "agent", "provider"],
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
)

DOC_TEXT_CHARS = 5000  # what the recommender keeps of a post's text
RELATED_LIMIT = 5
RELATED_SLACK = 10  # extra candidates, in case some were hidden or closed since the last fit
MODEL_ATTEMPTS = 3  # the model changed (refit by another caller, or a fresh worker) between corpus() and use


def record_run(
    session: AsyncSession,
    *,
    agent: str,
    input_type: str,
    input_id: str | None,
    provider: str,
    model: str,
    started: float,
    outcome: str,
    event_id: str | None = None,
    user_id: str | None = None,
    detail: dict[str, Any] | None = None,
    error: str | None = None,
) -> AgentRun:
    elapsed = time.perf_counter() - started
    AGENT_RUNS.labels("ai", agent, provider, outcome).inc()
    AGENT_LATENCY.labels("ai", agent, provider).observe(elapsed)
    run = AgentRun(
        id=uuid.uuid4(),
        agent=agent,
        input_type=input_type,
        input_id=input_id,
        event_id=event_id,
        user_id=user_id,
        provider=provider,
        model=model,
        latency_ms=round(elapsed * 1000, 3),
        outcome=outcome,
        detail=detail or {},
        error=error[:500] if error else None,
    )
    session.add(run)
    return run


# --------------------------------------------------------------------------- moderation


async def moderate(
    rt: AIRuntime,
    session: AsyncSession,
    *,
    target_type: str,
    target_id: str,
    author_id: str | None,
    text: str,
    event_id: str | None,
    outbox: OutboxBatch | None = None,
) -> ModerationResult:
    """Moderation agent. Its rows and its event are written at the next flush of the session / `outbox` (the
    caller's; without one, the event is written now)."""
    started = time.perf_counter()
    moderator = await oversight.moderator(rt, session)
    verdict = moderator.verdict(await rt.cpu.moderate(text))  # the worker scores, this process judges
    run = record_run(
        session,
        agent="moderation",
        input_type=target_type,
        input_id=target_id,
        event_id=event_id,
        user_id=author_id,
        provider="local",
        model=model_name(),
        started=started,
        outcome="flagged" if verdict.flagged else "passed",
        detail={"score": verdict.score, "labels": verdict.labels, "rules": verdict.rules, **verdict.detail},
    )
    result = ModerationResult(
        id=uuid.uuid4(),
        run_id=run.id,
        target_type=target_type,
        target_id=target_id,
        author_id=author_id,
        score=verdict.score,
        classifier_score=verdict.classifier_score,
        labels=verdict.labels,
        rules=verdict.rules,
        reason=verdict.reason,
        flagged=verdict.flagged,
        preview=textutil.clean(text)[:300],
    )
    session.add(result)
    if verdict.flagged:
        batch = outbox or OutboxBatch(session)
        batch.add(
            ModerationFlagged(
                target_type=target_type,
                target_id=target_id,
                score=verdict.score,
                labels=verdict.labels or ["flagged"],
                reason=verdict.reason,
                run_id=str(run.id),
                author_id=author_id,
                preview=result.preview,
            ),
            subject=target_id,
        )
        if outbox is None:
            await batch.flush()
    return result


# --------------------------------------------------------------------------- posts


async def on_post_content(
    rt: AIRuntime, session: AsyncSession, p: PostContent, *, event_id: str, published: bool
) -> None:
    """quark.post.published / updated: keep the document, then moderate, tag and relate it.

    A post of a deleted account (its event late behind quark.user.deleted) is not kept: the blog deletes it."""
    if await audience.is_deleted(session, p.author_id):
        return
    title = textutil.clean(p.title)[:300]
    body = textutil.clean(p.body_text)
    tags = [textutil.tag_of(t) for t in p.tags if textutil.tag_of(t)][:20]
    now = rt.now()
    values: dict[str, Any] = {
        "post_id": p.post_id,
        "author_id": p.author_id,
        "title": title,
        "slug": p.slug[:200],
        "excerpt": textutil.clean(p.excerpt)[:600],
        "text": body[:DOC_TEXT_CHARS],
        "tags": tags,
        "visibility": p.visibility[:16],
        "updated_at": now,
        "published_at": p.published_at or p.updated_at or now,
    }
    stmt = insert(Document).values(**values, active=True)
    refresh = {
        k: stmt.excluded[k]
        for k in ("author_id", "title", "slug", "excerpt", "text", "tags", "visibility", "updated_at")
    }
    if published:
        refresh["published_at"] = stmt.excluded.published_at
        refresh["active"] = stmt.excluded.active
    # The upserted row comes back with the statement (no second read); populate_existing refreshes an instance
    # this session already holds.
    doc = await session.scalar(
        stmt.on_conflict_do_update(index_elements=[Document.post_id], set_=refresh).returning(Document),
        execution_options={"populate_existing": True},
    )
    assert doc is not None
    # The three agents' rows and events are written together at the end (one INSERT per table, one for the
    # outbox) instead of a flush before each read: fewer statements per published post (docs/performance.md).
    outbox = OutboxBatch(session)
    with session.no_autoflush:
        await moderate(
            rt,
            session,
            target_type="post",
            target_id=p.post_id,
            author_id=p.author_id,
            text=f"{title}\n\n{body}",
            event_id=event_id,
            outbox=outbox,
        )
        await suggest_tags(rt, session, doc, body=body, event_id=event_id, outbox=outbox)
        await relate(rt, session, doc, event_id=event_id, outbox=outbox)
    await outbox.flush()
    await session.flush()


async def suggest_tags(
    rt: AIRuntime, session: AsyncSession, doc: Document, *, body: str, event_id: str | None, outbox: OutboxBatch
) -> None:
    """Tagging agent: extractive keywords the author has not used yet, offered to the author."""
    started = time.perf_counter()
    found = await rt.cpu.keywords(body, title=doc.title, limit=5, exclude=frozenset(doc.tags))
    changed = bool(found) and found != list(doc.suggested_tags)
    run = record_run(
        session,
        agent="tagging",
        input_type="post",
        input_id=doc.post_id,
        event_id=event_id,
        user_id=doc.author_id,
        provider="local",
        model="extractive-v1",
        started=started,
        outcome="ok" if found else "skipped",
        detail={"tags": found},
    )
    if changed:
        doc.suggested_tags = found
        outbox.add(
            SuggestionGenerated(
                kind="tags",
                user_id=doc.author_id,
                target_type="post",
                target_id=doc.post_id,
                items=found,
                run_id=str(run.id),
            ),
            subject=doc.post_id,
        )


async def relate(
    rt: AIRuntime, session: AsyncSession, doc: Document, *, event_id: str | None, outbox: OutboxBatch
) -> None:
    """Recommendations agent, per post: the posts most similar to a newly published or edited one."""
    started = time.perf_counter()
    if not doc.active or doc.hidden or doc.visibility != "public":
        return
    text = f"{doc.title} {doc.title} {' '.join(doc.tags)} {doc.text}"
    anyone = await audience.anyone(session)
    fitted, candidates = await _related(rt, session, doc.post_id, text, anyone)
    # The model may be older than the last edit of a candidate: judge each by its current state.
    visible = await visible_now(session, anyone, [p for p, _ in candidates])
    related = [(p, s) for p, s in candidates if p in visible][:RELATED_LIMIT]
    run = record_run(
        session,
        agent="recommendations",
        input_type="post",
        input_id=doc.post_id,
        event_id=event_id,
        user_id=doc.author_id,
        provider="local",
        model="tfidf-cosine",
        started=started,
        outcome="ok" if related else "skipped",
        detail={"related": [p for p, _ in related], "corpus": fitted.size},
    )
    if related:
        outbox.add(
            SuggestionGenerated(
                kind="related_posts",
                user_id=None,
                target_type="post",
                target_id=doc.post_id,
                items=[p for p, _ in related],
                scores=[s for _, s in related],
                run_id=str(run.id),
            ),
            subject=doc.post_id,
        )


async def corpus(rt: AIRuntime, session: AsyncSession) -> Corpus:
    """The TF-IDF model of the newest active posts, held by the model's worker process (cpu.py).

    Unchanged corpus: the model it holds. Changed, but the model is younger than `corpus_refresh`: new
    posts are added with the fitted vocabulary (cheap). Otherwise, or when the worker is a fresh one: a
    full refit. Posts hidden or deleted since are filtered by the callers against the live table.
    """
    live = (Document.active.is_(True), Document.hidden.is_(False))
    count, newest = (await session.execute(select(func.count(), func.max(Document.updated_at)).where(*live))).one()
    version = (min(int(count), rt.settings.corpus_size), newest)
    cpu = rt.cpu
    cached = cpu.corpus()
    if cached is not None and cached.version == version:
        return cached
    async with cpu.refit_lock:
        cached = cpu.corpus()
        if cached is not None and cached.version == version:  # another caller did it meanwhile
            return cached
        fresh = cached if cached is not None and cached.extendable and (
            time.monotonic() - cached.fitted_at < rt.settings.corpus_refresh) else None
        since = fresh.version[1] if fresh is not None else None
        stmt = select(Document).where(*live).order_by(Document.published_at.desc()).limit(rt.settings.corpus_size)
        if fresh is not None and since is not None:
            stmt = stmt.where(Document.updated_at > since)
        docs = [_doc(r) for r in (await session.scalars(stmt)).all()]
        if fresh is not None and since is not None:
            return await cpu.extend(version, docs)
        return await cpu.fit(version, docs)


async def _related(
    rt: AIRuntime, session: AsyncSession, post_id: str, text: str, anyone: audience.Audience
) -> tuple[Corpus, list[tuple[str, float]]]:
    for _ in range(MODEL_ATTEMPTS):
        fitted = await corpus(rt, session)
        found = await rt.cpu.related(fitted, post_id, text, audience=anyone, limit=RELATED_LIMIT + RELATED_SLACK)
        if found is not None:
            return fitted, found
    raise WorkerDied("the model worker kept changing its model; retried")


async def ranked(
    rt: AIRuntime, session: AsyncSession, *, viewer: audience.Audience, liked: dict[str, float], limit: int
) -> tuple[Corpus, list[Scored]]:
    """ "You may like" candidates for `viewer`, ranked by the model's worker (settings applied per call)."""
    s = rt.settings
    for _ in range(MODEL_ATTEMPTS):
        fitted = await corpus(rt, session)
        found = await rt.cpu.rank(fitted, audience=viewer, liked=liked, now=rt.now(), follow_boost=s.follow_boost,
                                  half_life_days=s.recency_half_life_days, limit=limit)
        if found is not None:
            return fitted, found
    raise WorkerDied("the model worker kept changing its model; retried")


async def visible_now(session: AsyncSession, viewer: audience.Audience, post_ids: list[str]) -> set[str]:
    """Of `post_ids`, those live now (published, not hidden) that `viewer` may see with their current visibility."""
    if not post_ids:
        return set()
    rows = (
        await session.execute(
            select(Document.post_id, Document.author_id, Document.visibility).where(
                Document.post_id.in_(post_ids), Document.active.is_(True), Document.hidden.is_(False)
            )
        )
    ).all()
    return {r.post_id for r in rows if viewer.can_see(r.author_id, r.visibility)}


def _doc(r: Document) -> Doc:
    return Doc(r.post_id, r.author_id, r.title, r.text, tuple(r.tags), r.visibility, r.published_at)


async def set_post_state(
    session: AsyncSession, post_id: str, *, active: bool | None = None, hidden: bool | None = None
) -> None:
    values: dict[str, Any] = {}
    if active is not None:
        values["active"] = active
    if hidden is not None:
        values["hidden"] = hidden
    values["updated_at"] = func.now()
    await session.execute(update(Document).where(Document.post_id == post_id).values(**values))


async def delete_post(session: AsyncSession, post_id: str) -> None:
    await session.execute(delete(Document).where(Document.post_id == post_id))
    await session.execute(delete(Reaction).where(Reaction.post_id == post_id))


# --------------------------------------------------------------------------- comments


async def on_comment(rt: AIRuntime, session: AsyncSession, c: CommentContent, *, event_id: str) -> None:
    """quark.comment.created / updated: every version is moderated (a verdict per version, newest last).

    A comment of a deleted account (its event late behind quark.user.deleted) is not kept: the blog deletes it."""
    if await audience.is_deleted(session, c.author_id):
        return
    await moderate(
        rt,
        session,
        target_type="comment",
        target_id=c.comment_id,
        author_id=c.author_id,
        text=textutil.clean(c.body_text),
        event_id=event_id,
    )


# --------------------------------------------------------------------------- signals


async def react(session: AsyncSession, *, user_id: str, post_id: str, kind: str, added: bool, at: datetime) -> None:
    if added:
        await session.execute(
            insert(Reaction).values(user_id=user_id, post_id=post_id, kind=kind, created_at=at).on_conflict_do_nothing()
        )
    else:
        await session.execute(
            delete(Reaction).where(Reaction.user_id == user_id, Reaction.post_id == post_id, Reaction.kind == kind)
        )


async def follow(session: AsyncSession, follower_id: str, followee_id: str, *, on: bool) -> None:
    if on:
        await session.execute(
            insert(Follow).values(follower_id=follower_id, followee_id=followee_id).on_conflict_do_nothing()
        )
    else:
        await session.execute(
            delete(Follow).where(Follow.follower_id == follower_id, Follow.followee_id == followee_id)
        )


PERSONAL_RUNS = ("draft", "assist")  # runs a person asked for: their topic, their text's measures


async def forget_user(session: AsyncSession, user_id: str) -> None:
    """quark.user.deleted: erase what we hold about the person, keep nothing that names them.

    Gone: their reactions, follows, blocks, mutes, suggestions, drafts, their posts' documents, the runs
    they asked for (drafts, assists, their recommendations). Anonymised: the audit of what the agents
    did with their content (runs and moderation verdicts keep the outcome and the score, lose the author,
    the details and the text preview) and the reviews they made as a moderator (lose the reviewer).
    Only the fact that the account is deleted stays (audience.mark_deleted), so late events are ignored.
    """
    await session.execute(delete(Reaction).where(Reaction.user_id == user_id))
    await session.execute(delete(Follow).where((Follow.follower_id == user_id) | (Follow.followee_id == user_id)))
    await session.execute(delete(UserSuggestion).where(UserSuggestion.user_id == user_id))
    await session.execute(delete(Draft).where(Draft.user_id == user_id))
    await session.execute(delete(Document).where(Document.author_id == user_id))
    await session.execute(
        delete(AgentRun).where(
            ((AgentRun.user_id == user_id) & AgentRun.agent.in_(PERSONAL_RUNS)) | (AgentRun.input_id == user_id)
        )
    )
    await session.execute(update(AgentRun).where(AgentRun.user_id == user_id).values(user_id=None, detail={}))
    await session.execute(
        update(ModerationResult).where(ModerationResult.author_id == user_id).values(author_id=None, preview="")
    )
    await session.execute(
        update(ModerationResult).where(ModerationResult.decided_by == user_id).values(decided_by=None)
    )
    await audience.mark_deleted(session, user_id)
