"""Reading posts: who may see a post (the visibility rule, moderators reading what is under moderation) and
the full view of one post. Plain functions over a session, no writes; the write paths in `service`,
`comments`, `reactions` and `moderation` use the same checks."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from quark_blog.common import SUMMARY_COLUMNS, SUMMARY_FROM, is_moderator, summary_from_row, viewer_id
from quark_blog.models import Author, Post, Reaction
from quark_blog.visibility import can_see_sql, listed_sql
from quark_sdk.auth import Principal
from quark_sdk.errors import NotFound


async def under_moderation(session: AsyncSession, target_type: str, target_id: uuid.UUID, hidden: bool) -> bool:
    """Hidden (by a moderator or an automatic flag) or with an open report: what moderators may read."""
    if hidden:
        return True
    open_report = await session.scalar(
        text("SELECT 1 FROM reports WHERE target_type = :t AND target_id = :id AND status = 'open' LIMIT 1"),
        {"t": target_type, "id": target_id},
    )
    return open_report is not None


async def can_see(session: AsyncSession, principal: Principal | None, post: Post, *, moderating: bool = True) -> bool:
    """The caller may read the post: the visibility rule, or a moderator reading a post under moderation
    (hidden or reported; `moderating=False` for writes: moderators comment and react like anyone)."""
    viewer = viewer_id(principal)
    if viewer == post.author_id:
        return True
    if (
        moderating
        and is_moderator(principal)
        and post.status == "published"
        and post.deleted_at is None
        and await under_moderation(session, "post", post.id, post.hidden)
    ):
        return True
    sql = (
        f"SELECT 1 FROM posts p JOIN authors a ON a.user_id = p.author_id WHERE p.id = :id AND "  # noqa: S608
        f"{listed_sql()} AND {can_see_sql(':viewer' if viewer else None)}"
    )
    return (await session.execute(text(sql), {"id": post.id, "viewer": viewer or ""})).first() is not None


async def get_post(session: AsyncSession, principal: Principal | None, post_id: uuid.UUID) -> Post:
    post = await session.get(Post, post_id)
    if post is None or post.deleted_at is not None:
        raise NotFound("post not found")
    return await readable(session, principal, post)


async def readable(session: AsyncSession, principal: Principal | None, post: Post) -> Post:
    """`post` (not deleted) if the caller may read it, else NotFound (never a hint that it exists)."""
    viewer = viewer_id(principal)
    if viewer != post.author_id:
        if post.status != "published":
            raise NotFound("post not found")
        if not await can_see(session, principal, post):
            raise NotFound("post not found")
    return post


async def post_out(
    session: AsyncSession, principal: Principal | None, post: Post, *, just_created: bool = False
) -> dict[str, Any]:
    """The full view of one post for this caller (`just_created`: no one has reacted yet, so the caller's
    reactions are not looked up — a statement fewer on every compose)."""
    row = (
        (await session.execute(text(f"SELECT {SUMMARY_COLUMNS} {SUMMARY_FROM} WHERE p.id = :id"), {"id": post.id}))
        .mappings()
        .one()
    )
    out = summary_from_row(row)
    viewer = viewer_id(principal)
    own = viewer == post.author_id
    mine: list[str] = []
    if viewer and not just_created:
        mine = list(
            (
                await session.scalars(
                    select(Reaction.kind)
                    .where(Reaction.post_id == post.id, Reaction.user_id == viewer)
                    .order_by(Reaction.kind)
                )
            ).all()
        )
    out.update(
        body_html=post.body_html,
        body_format=post.body_format,
        body_source=post.body_source if own else None,
        status=post.status,
        scheduled_at=post.scheduled_at,
        created_at=post.created_at,
        updated_at=post.updated_at,
        hidden=post.hidden,
        hidden_reason=post.hidden_reason if (own or is_moderator(principal)) else None,
        my_reactions=mine,
    )
    return out


async def find_author(session: AsyncSession, username: str) -> Author:
    author = await session.scalar(
        select(Author)
        .where(func.lower(Author.username) == username.lower(), Author.deleted.is_(False))
        .order_by(Author.updated_at.desc())
        .limit(1)
    )
    if author is None:
        raise NotFound("no such author")
    return author


async def get_post_by_slug(session: AsyncSession, principal: Principal | None, username: str, slug: str) -> Post:
    # One statement for the author (the one `find_author` picks) and the post; on a miss, `find_author` says
    # whether the author or the post is missing.
    author_id = (
        select(Author.user_id)
        .where(func.lower(Author.username) == username.lower(), Author.deleted.is_(False))
        .order_by(Author.updated_at.desc())
        .limit(1)
        .scalar_subquery()
    )
    post = await session.scalar(
        select(Post).where(Post.author_id == author_id, Post.slug == slug, Post.deleted_at.is_(None))
    )
    if post is None:
        await find_author(session, username)
        raise NotFound("post not found")
    return await readable(session, principal, post)
