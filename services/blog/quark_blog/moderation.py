"""Reports by users, automatic flags from the AI service, and the moderators' queue."""

from __future__ import annotations

import uuid
from typing import Any, Literal

from sqlalchemy import select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from quark_blog import render
from quark_blog.comments import remove_comment, set_comment_hidden
from quark_blog.models import Comment, Post, Report
from quark_blog.reading import can_see, get_post
from quark_blog.runtime import BlogRuntime
from quark_blog.schemas import ModerationDecided, ModerationFlagged, PostReported
from quark_blog.service import ensure_author, remove_post, set_post_hidden
from quark_blog.timeline import from_score, score_of
from quark_sdk.auth import Principal
from quark_sdk.errors import Conflict, NotFound
from quark_sdk.outbox import add_event
from quark_sdk.pagination import decode_cursor, encode_cursor, page_of

Target = Literal["post", "comment"]
EXCERPT_CHARS = 1500  # of the reported text, in the report event: what the moderation queue shows
RESOLUTIONS = {"dismiss": "dismissed", "hide": "hidden", "delete": "deleted", "warn": "warned",
               "suspend": "suspended"}


async def report(
    rt: BlogRuntime, session: AsyncSession, principal: Principal, target_type: Target, target_id: uuid.UUID, reason: str
) -> Report:
    cleaned = render.clean_plain(reason)
    if not cleaned:
        from quark_sdk.errors import InvalidInput

        raise InvalidInput("reason is empty", field="reason")
    try:
        async with session.begin():
            reporter = await ensure_author(session, principal)
            if target_type == "post":
                post = await session.get(Post, target_id)
                if (
                    post is None
                    or post.deleted_at is not None
                    or post.status != "published"
                    or not await can_see(session, principal, post, moderating=False)
                ):
                    raise NotFound("post not found")
                author_id, excerpt = post.author_id, post.body_text
            else:
                comment = await session.get(Comment, target_id)
                if comment is None or comment.deleted_at is not None:
                    raise NotFound("comment not found")
                post = await get_post(session, principal, comment.post_id)
                author_id, excerpt = comment.author_id, comment.body_text
            row = Report(
                id=uuid.uuid4(),
                target_type=target_type,
                target_id=target_id,
                reporter_id=reporter.user_id,
                source="user",
                reason=cleaned,
                labels=[],
                status="open",
                created_at=rt.now(),
            )
            session.add(row)
            await session.flush()
            await add_event(
                session,
                PostReported(
                    report_id=str(row.id),
                    target_type=target_type,
                    target_id=str(target_id),
                    reporter_id=reporter.user_id,
                    reason=cleaned,
                    author_id=author_id,
                    post_id=str(post.id),
                    title=post.title,
                    excerpt=(excerpt or "")[:EXCERPT_CHARS],
                ),
                subject=str(target_id),
            )
    except IntegrityError as exc:
        if "uq_reports_open_per_reporter" in str(exc.orig):
            raise Conflict("you have already reported this", code="already-reported") from None
        raise
    return row


async def apply_flag(rt: BlogRuntime, session: AsyncSession, flag: ModerationFlagged) -> None:
    """An automatic flag: open a report and hide the target pending review (inside the consumer's transaction)."""
    try:
        target_id = uuid.UUID(flag.target_id)
    except ValueError:
        return  # not one of ours
    model = Post if flag.target_type == "post" else Comment
    target = await session.get(model, target_id)
    if target is None or target.deleted_at is not None:
        return
    if flag.run_id is not None:
        seen = await session.scalar(
            select(Report.id)
            .where(
                Report.source == "ai",
                Report.target_type == flag.target_type,
                Report.target_id == target_id,
                Report.run_id == flag.run_id,
            )
            .limit(1)
        )
        if seen is not None:
            return  # the same verdict delivered again (a retried or re-sent event): one report, one hide
    reason = render.clean_plain(flag.reason or "") or ("automatic flag: " + ", ".join(flag.labels))[:500]
    session.add(
        Report(
            id=uuid.uuid4(),
            target_type=flag.target_type,
            target_id=target_id,
            reporter_id=None,
            source="ai",
            reason=reason[:500],
            score=flag.score,
            labels=[x[:64] for x in flag.labels[:20]],
            run_id=flag.run_id,
            status="open",
            created_at=rt.now(),
        )
    )
    if not target.hidden:
        note = f"automatic: {reason}"[:500]
        if flag.target_type == "post":
            await set_post_hidden(rt, session, target_id, hidden=True, actor_id=None, reason=note)
        else:
            await set_comment_hidden(rt, session, target_id, hidden=True, actor_id=None, reason=note)


async def apply_decision(rt: BlogRuntime, session: AsyncSession, d: ModerationDecided) -> None:
    """The moderation queue decided about a post or comment (inside the consumer's transaction): apply it and
    close every open report and flag on the target — the queue's case is the review they waited for.

    hide keeps (or makes) the target hidden, now by the moderator; delete removes it; dismiss restores a target
    an automatic flag had hidden; warn and suspend concern the author (the user module) and leave it as it is."""
    if d.module != "blog" or d.kind not in ("post", "comment"):
        return
    try:
        target_id = uuid.UUID(d.target_id)
    except ValueError:
        return
    model = Post if d.kind == "post" else Comment
    target = await session.scalar(select(model).where(model.id == target_id).with_for_update())
    live = target is not None and target.deleted_at is None
    reason = render.clean_plain(d.reason)[:500] or None
    setter = set_post_hidden if d.kind == "post" else set_comment_hidden
    if live and target is not None:
        if d.action == "hide":
            if target.hidden:  # hidden by an automatic flag: upheld, now the moderator's
                target.hidden_by, target.hidden_reason = d.moderator_id, reason
            else:
                await setter(rt, session, target_id, hidden=True, actor_id=d.moderator_id, reason=reason,
                             resolve_reports=False)
        elif d.action == "delete":
            if isinstance(target, Post):
                await remove_post(rt, session, target)
            else:
                await remove_comment(rt, session, target)
        elif d.action == "dismiss" and target.hidden and target.hidden_by is None:
            await setter(rt, session, target_id, hidden=False, actor_id=d.moderator_id, reason=reason,
                         resolve_reports=False)
    await session.execute(
        text(
            "UPDATE reports SET status = 'resolved', resolution = :res, resolved_at = :now, resolved_by = :by "
            "WHERE target_type = :tt AND target_id = :tid AND status = 'open'"
        ),
        {"res": RESOLUTIONS[d.action], "now": rt.now(), "by": d.moderator_id, "tt": d.kind, "tid": target_id},
    )


async def resolve(
    rt: BlogRuntime, session: AsyncSession, principal: Principal, report_id: uuid.UUID, action: str, reason: str | None
) -> Report:
    async with session.begin():
        row = await session.scalar(select(Report).where(Report.id == report_id).with_for_update())
        if row is None:
            raise NotFound("report not found")
        if row.status != "open":
            raise Conflict("report is already resolved")
        model = Post if row.target_type == "post" else Comment
        target = await session.get(model, row.target_id)
        if action in ("hide", "restore"):
            if target is None or target.deleted_at is not None:
                raise Conflict("the reported content no longer exists; dismiss the report")
            want_hidden = action == "hide"
            if target.hidden != want_hidden:
                setter = set_post_hidden if row.target_type == "post" else set_comment_hidden
                await setter(
                    rt,
                    session,
                    row.target_id,
                    hidden=want_hidden,
                    actor_id=principal.subject,
                    reason=reason or row.reason,
                    resolve_reports=False,
                )
        resolution = {"hide": "hidden", "restore": "restored", "dismiss": "dismissed"}[action]
        scope = "target_type = :tt AND target_id = :tid" if action != "dismiss" else "id = :rid"
        await session.execute(
            text(
                f"UPDATE reports SET status = 'resolved', resolution = :res, resolved_at = :now, resolved_by = :by "  # noqa: S608
                f"WHERE status = 'open' AND {scope}"
            ),
            {
                "res": resolution,
                "now": rt.now(),
                "by": principal.subject,
                "tt": row.target_type,
                "tid": row.target_id,
                "rid": row.id,
            },
        )
    async with session.begin():
        await session.refresh(row)
    return row


async def queue(
    session: AsyncSession, limit: int, cursor: str | None, status: str = "open"
) -> tuple[list[dict[str, Any]], str | None]:
    """Reports oldest first (open ones by default), each with the target's state and a preview."""
    params: dict[str, Any] = {"lim": limit + 1, "status": status}
    cond = ""
    if cursor:
        score, ident = decode_cursor(cursor, (int, uuid.UUID))
        params["c_at"], params["c_id"] = from_score(score), ident
        cond = " AND (r.created_at, r.id) > (:c_at, :c_id)"
    sql = f"""
        SELECT r.*, coalesce(p.hidden, c.hidden) AS target_hidden,
               coalesce(p.title || ': ' || left(p.body_text, 200), left(c.body_text, 200)) AS target_preview
        FROM reports r
        LEFT JOIN posts p ON r.target_type = 'post' AND p.id = r.target_id
        LEFT JOIN comments c ON r.target_type = 'comment' AND c.id = r.target_id
        WHERE r.status = :status{cond}
        ORDER BY r.created_at, r.id LIMIT :lim"""  # noqa: S608 - cond is a fixed fragment
    rows = (await session.execute(text(sql), params)).mappings().all()
    items = [dict(r) for r in rows]
    for it in items:
        it["labels"] = list(it["labels"] or [])
    return page_of(items, limit, lambda r: encode_cursor(score_of(r["created_at"]), r["id"]))


def report_out(row: Report) -> dict[str, Any]:
    return {
        c: getattr(row, c)
        for c in (
            "id",
            "target_type",
            "target_id",
            "reporter_id",
            "source",
            "reason",
            "score",
            "labels",
            "status",
            "resolution",
            "created_at",
            "resolved_at",
            "resolved_by",
        )
    }
