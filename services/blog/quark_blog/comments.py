"""Comments: threaded replies (materialised path), edit/delete by their author, hidden by moderators.

`post_stats.comment_count` counts visible comments (not deleted, not hidden) and is
changed in the same transaction as the comment, under the stats row lock.
"""

from __future__ import annotations

import uuid
from functools import cache
from typing import Any

from sqlalchemy import Integer, Select, String, Uuid, bindparam, select, text, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from quark_blog import render
from quark_blog.common import is_moderator, viewer_id
from quark_blog.models import Author, Comment, Post
from quark_blog.reactions import _post_for_interaction
from quark_blog.reading import get_post, under_moderation
from quark_blog.runtime import BlogRuntime
from quark_blog.schemas import (
    CommentCreate,
    CommentCreated,
    CommentDeleted,
    CommentHidden,
    CommentRestored,
    CommentUpdate,
    CommentUpdated,
)
from quark_blog.service import ensure_author, render_checked
from quark_blog.timeline import from_score, score_of
from quark_sdk.auth import Principal
from quark_sdk.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from quark_sdk.outbox import add_event
from quark_sdk.pagination import decode_cursor, encode_cursor, page_of

MAX_DEPTH = 32
SEGMENT = 24  # 14 hex digits of creation time in µs + 10 of the id: fixed width, so path order = thread order


async def _bump_comments(session: AsyncSession, post_id: uuid.UUID, delta: int) -> None:
    await session.execute(
        text("UPDATE post_stats SET comment_count = greatest(comment_count + :d, 0) WHERE post_id = :p"),
        {"d": delta, "p": post_id},
    )


async def create_comment(
    rt: BlogRuntime, session: AsyncSession, principal: Principal, post_id: uuid.UUID, body: CommentCreate
) -> Comment:
    safe, plain = render_checked(body.body, body.format, rt.settings.max_comment_chars)
    async with session.begin():
        author = await ensure_author(session, principal)
        post = await _post_for_interaction(session, principal, post_id)
        now = rt.now()
        cid = uuid.uuid4()
        segment = f"{score_of(now):014x}{cid.hex[:10]}"
        parent: Comment | None = None
        if body.parent_id is not None:
            parent = await session.get(Comment, body.parent_id)
            if parent is None or parent.post_id != post_id:
                raise InvalidInput("parent comment not found on this post", field="parent_id")
            if parent.deleted_at is not None or parent.hidden:
                raise Conflict("cannot reply to a deleted or hidden comment")
            if parent.depth + 1 > MAX_DEPTH:
                raise InvalidInput(f"replies nest at most {MAX_DEPTH} levels deep", field="parent_id")
        comment = Comment(
            id=cid,
            post_id=post_id,
            author_id=author.user_id,
            parent_id=parent.id if parent else None,
            path=(parent.path if parent else "") + segment,
            depth=parent.depth + 1 if parent else 0,
            body_source=body.body,
            body_html=safe,
            body_text=plain,
            created_at=now,
            updated_at=now,
            edited=False,
            deleted_at=None,
            hidden=False,
        )
        session.add(comment)
        await session.flush()
        await _bump_comments(session, post_id, 1)
        await add_event(
            session,
            CommentCreated(
                comment_id=str(cid),
                post_id=str(post_id),
                post_author_id=post.author_id,
                author_id=author.user_id,
                author_username=author.username,
                parent_id=str(parent.id) if parent else None,
                parent_author_id=parent.author_id if parent else None,
                body_text=plain[: rt.settings.event_body_text_max],
                created_at=now,
            ),
            subject=str(post_id),
        )
    return comment


async def _lock_own_comment(session: AsyncSession, principal: Principal, comment_id: uuid.UUID) -> Comment:
    uid = principal.subject  # a user: the route took WritingUser
    comment = await session.scalar(select(Comment).where(Comment.id == comment_id).with_for_update())
    if comment is None or comment.deleted_at is not None:
        raise NotFound("comment not found")
    if comment.author_id != uid:
        await get_post(session, principal, comment.post_id)  # 404 when the post is not visible either
        raise PermissionDenied("only the author can change this comment")
    return comment


async def update_comment(
    rt: BlogRuntime, session: AsyncSession, principal: Principal, comment_id: uuid.UUID, body: CommentUpdate
) -> Comment:
    safe, plain = render_checked(body.body, body.format, rt.settings.max_comment_chars)
    async with session.begin():
        author = await ensure_author(session, principal)
        comment = await _lock_own_comment(session, principal, comment_id)
        if comment.hidden:
            raise Conflict("comment is hidden pending review")
        comment.body_source, comment.body_html, comment.body_text = body.body, safe, plain
        comment.updated_at, comment.edited = rt.now(), True
        # Edits are moderated like new comments (the AI service consumes this as it does quark.comment.created).
        post = await session.get(Post, comment.post_id)
        parent = await session.get(Comment, comment.parent_id) if comment.parent_id else None
        await add_event(
            session,
            CommentUpdated(
                comment_id=str(comment.id),
                post_id=str(comment.post_id),
                post_author_id=post.author_id if post else "",
                author_id=author.user_id,
                author_username=author.username,
                parent_id=str(comment.parent_id) if comment.parent_id else None,
                parent_author_id=parent.author_id if parent else None,
                body_text=plain[: rt.settings.event_body_text_max],
                created_at=comment.created_at,
                updated_at=comment.updated_at,
            ),
            subject=str(comment.post_id),
        )
    return comment


async def delete_comment(rt: BlogRuntime, session: AsyncSession, principal: Principal, comment_id: uuid.UUID) -> None:
    async with session.begin():
        comment = await _lock_own_comment(session, principal, comment_id)
        await remove_comment(rt, session, comment)


async def remove_comment(rt: BlogRuntime, session: AsyncSession, comment: Comment) -> None:
    """Delete a locked comment (its author, or a moderator's decision); the caller's transaction must be open."""
    await _tombstone(session, comment, rt)
    await add_event(
        session,
        CommentDeleted(comment_id=str(comment.id), post_id=str(comment.post_id), author_id=comment.author_id),
        subject=str(comment.post_id),
    )


async def _tombstone(session: AsyncSession, comment: Comment, rt: BlogRuntime) -> None:
    """Soft delete: the row stays (its replies keep their place), the words go."""
    if not comment.hidden:
        await _bump_comments(session, comment.post_id, -1)
    comment.deleted_at = comment.updated_at = rt.now()
    comment.body_source = comment.body_html = comment.body_text = ""


async def set_comment_hidden(
    rt: BlogRuntime,
    session: AsyncSession,
    comment_id: uuid.UUID,
    *,
    hidden: bool,
    actor_id: str | None,
    reason: str | None,
    resolve_reports: bool = True,
) -> Comment:
    comment = await session.scalar(select(Comment).where(Comment.id == comment_id).with_for_update())
    if comment is None or comment.deleted_at is not None:
        raise NotFound("comment not found")
    if comment.hidden == hidden:
        raise Conflict("comment is already hidden" if hidden else "comment is not hidden")
    now = rt.now()
    reason = render.clean_plain(reason) if reason else None
    comment.hidden = hidden
    comment.hidden_reason, comment.hidden_by, comment.hidden_at = (
        (reason, actor_id, now) if hidden else (None, None, None)
    )
    await _bump_comments(session, comment.post_id, -1 if hidden else 1)
    payload: CommentHidden | CommentRestored
    cls = CommentHidden if hidden else CommentRestored
    payload = cls(
        comment_id=str(comment.id),
        post_id=str(comment.post_id),
        author_id=comment.author_id,
        actor_id=actor_id,
        reason=reason,
    )
    await add_event(session, payload, subject=str(comment.post_id))
    if resolve_reports and actor_id is not None:
        await session.execute(
            text(
                "UPDATE reports SET status = 'resolved', resolution = :res, resolved_at = :now, resolved_by = :by "
                "WHERE target_type = 'comment' AND target_id = :id AND status = 'open'"
            ),
            {"res": "hidden" if hidden else "restored", "now": now, "by": actor_id, "id": comment.id},
        )
    return comment


async def moderate_comment(
    rt: BlogRuntime,
    session: AsyncSession,
    principal: Principal,
    comment_id: uuid.UUID,
    *,
    hidden: bool,
    reason: str | None,
) -> Comment:
    async with session.begin():
        return await set_comment_hidden(
            rt, session, comment_id, hidden=hidden, actor_id=principal.subject, reason=reason
        )


# --------------------------------------------------------------------------- reads


def comment_out(comment: Comment, author: Author | None, principal: Principal | None) -> dict[str, Any]:
    if comment.deleted_at is not None:
        state = "deleted"
    elif comment.hidden:
        state = "hidden"
    else:
        state = "visible"
    show = state == "visible" or (
        state == "hidden" and (is_moderator(principal) or viewer_id(principal) == comment.author_id)
    )
    return {
        "id": comment.id,
        "post_id": comment.post_id,
        "parent_id": comment.parent_id,
        "depth": comment.depth,
        "state": state,
        "author": (
            {"user_id": author.user_id, "username": author.username, "display_name": author.display_name}
            if author is not None and state != "deleted"
            else None
        ),
        "body_html": comment.body_html if show else "",
        "created_at": comment.created_at,
        "updated_at": comment.updated_at,
        "edited": comment.edited,
    }


async def get_comment(session: AsyncSession, principal: Principal | None, comment_id: uuid.UUID) -> dict[str, Any]:
    comment = await session.get(Comment, comment_id)
    if comment is None:
        raise NotFound("comment not found")
    own = comment.author_id is not None and viewer_id(principal) == comment.author_id
    if not own and not (
        is_moderator(principal)
        and comment.deleted_at is None
        and await under_moderation(session, "comment", comment.id, comment.hidden)
    ):
        await get_post(session, principal, comment.post_id)  # the comment is as visible as its post (its
        # author always reads it, even orphaned: the post deleted, with or without its author's account)
    author = await session.get(Author, comment.author_id) if comment.author_id else None
    return comment_out(comment, author, principal)


async def list_comments(
    session: AsyncSession, principal: Principal | None, post_id: uuid.UUID, limit: int, cursor: str | None
) -> tuple[list[dict[str, Any]], str | None]:
    """Comments of a post in thread order (each reply right after its parent); tombstones keep the tree whole."""
    post: Post = await get_post(session, principal, post_id)
    return await comments_of(session, principal, post, limit, cursor)


@cache
def thread_statement(*, after_cursor: bool) -> Select[Any]:
    """A post's comments in thread order with their authors, built once (bound: `post_id`, `limit`, and
    `after`, the cursor's path): a post page reads them on every open, and building the statement costs
    about what running it does."""
    q = (
        select(Comment, Author)
        .outerjoin(Author, Author.user_id == Comment.author_id)
        .where(Comment.post_id == bindparam("post_id", type_=Uuid))
    )
    if after_cursor:
        q = q.where(Comment.path > bindparam("after", type_=String))
    return q.order_by(Comment.path).limit(bindparam("limit", type_=Integer))


async def comments_of(
    session: AsyncSession, principal: Principal | None, post: Post, limit: int, cursor: str | None
) -> tuple[list[dict[str, Any]], str | None]:
    """`list_comments` of a post the caller may read (checked by the caller: `get_post`, `get_post_by_slug`)."""
    params: dict[str, Any] = {"post_id": post.id, "limit": limit + 1}
    if cursor:
        (params["after"],) = decode_cursor(cursor, (str,))
    rows = (await session.execute(thread_statement(after_cursor=bool(cursor)), params)).all()
    items = [(c.path, comment_out(c, a, principal)) for c, a in rows]
    page, nxt = page_of(items, limit, lambda it: encode_cursor(it[0]))
    return [it[1] for it in page], nxt


async def my_comments(
    session: AsyncSession, principal: Principal, user_id: str, limit: int, cursor: str | None
) -> tuple[list[dict[str, Any]], str | None]:
    """The caller's own comments, newest first, wherever they are — also those left orphaned on a post
    that was deleted (with or without its author's account); deleted comments are not listed."""
    q = (
        select(Comment, Author)
        .outerjoin(Author, Author.user_id == Comment.author_id)
        .where(Comment.author_id == user_id, Comment.deleted_at.is_(None))
    )
    if cursor:
        score, ident = decode_cursor(cursor, (int, uuid.UUID))
        q = q.where(tuple_(Comment.created_at, Comment.id) < tuple_(from_score(score), ident))
    rows = (await session.execute(q.order_by(Comment.created_at.desc(), Comment.id.desc()).limit(limit + 1))).all()
    items = [(c, comment_out(c, a, principal)) for c, a in rows]
    page, nxt = page_of(items, limit, lambda it: encode_cursor(score_of(it[0].created_at), it[0].id))
    return [it[1] for it in page], nxt
