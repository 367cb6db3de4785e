"""Reactions to posts: one per (person, post, kind), counted in `post_stats`, announced as `quark.post.reacted`.

Plain functions over a session, no HTTP types; each write is one transaction with its counter and event.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from quark_blog.common import viewer_id
from quark_blog.models import Post, PostStats, Reaction
from quark_blog.reading import can_see, get_post
from quark_blog.runtime import BlogRuntime
from quark_blog.schemas import REACTION_KINDS, PostReacted
from quark_blog.service import ensure_author
from quark_sdk.auth import Principal
from quark_sdk.errors import Conflict, InvalidInput, NotFound
from quark_sdk.outbox import add_event


async def _post_for_interaction(session: AsyncSession, principal: Principal, post_id: uuid.UUID) -> Post:
    post = await session.get(Post, post_id)
    if (
        post is None
        or post.deleted_at is not None
        or post.status != "published"
        or not await can_see(session, principal, post, moderating=False)
    ):
        raise NotFound("post not found")
    if post.hidden:
        raise Conflict("post is hidden pending review")
    return post


async def add_reaction(
    rt: BlogRuntime, session: AsyncSession, principal: Principal, post_id: uuid.UUID, kind: str
) -> dict[str, int]:
    if kind not in REACTION_KINDS:
        raise InvalidInput(f"unknown reaction {kind[:20]!r}", field="kind")
    async with session.begin():
        author = await ensure_author(session, principal)
        post = await _post_for_interaction(session, principal, post_id)
        inserted = (
            await session.execute(
                text(
                    "INSERT INTO reactions (post_id, user_id, kind) VALUES (:p, :u, :k) ON CONFLICT DO NOTHING "
                    "RETURNING kind"
                ),
                {"p": post_id, "u": author.user_id, "k": kind},
            )
        ).first()
        if inserted is None:
            raise Conflict(f"you already reacted with {kind!r}", code="already-reacted")
        counts = await _bump_reaction(session, post_id, kind, 1)
        await add_event(
            session,
            PostReacted(
                post_id=str(post_id), post_author_id=post.author_id, user_id=author.user_id, kind=kind, action="added"
            ),
            subject=str(post_id),
        )
    return counts


async def remove_reaction(
    rt: BlogRuntime, session: AsyncSession, principal: Principal, post_id: uuid.UUID, kind: str
) -> dict[str, int]:
    if kind not in REACTION_KINDS:
        raise InvalidInput(f"unknown reaction {kind[:20]!r}", field="kind")
    uid = principal.subject  # a user: the route took WritingUser
    async with session.begin():
        post = await session.get(Post, post_id)
        if post is None or post.deleted_at is not None:
            raise NotFound("post not found")
        deleted = (
            await session.execute(
                text("DELETE FROM reactions WHERE post_id = :p AND user_id = :u AND kind = :k RETURNING kind"),
                {"p": post_id, "u": uid, "k": kind},
            )
        ).first()
        if deleted is None:
            raise NotFound(f"you have not reacted with {kind!r}")
        counts = await _bump_reaction(session, post_id, kind, -1)
        await add_event(
            session,
            PostReacted(post_id=str(post_id), post_author_id=post.author_id, user_id=uid, kind=kind, action="removed"),
            subject=str(post_id),
        )
    return counts


async def _bump_reaction(session: AsyncSession, post_id: uuid.UUID, kind: str, delta: int) -> dict[str, int]:
    """Atomic counter change under the stats row lock: concurrent reactions never lose an update."""
    counts = await session.scalar(
        text(
            "UPDATE post_stats SET reactions = jsonb_set(reactions, ARRAY[CAST(:k AS text)], "
            "to_jsonb(greatest(coalesce((reactions->>CAST(:k AS text))::int, 0) + :d, 0))) "
            "WHERE post_id = :p RETURNING reactions"
        ),
        {"k": kind, "d": delta, "p": post_id},
    )
    return _counts(counts)


def _counts(value: Any) -> dict[str, int]:
    import json

    if value is None:
        return {}
    if isinstance(value, str):
        value = json.loads(value)
    return {k: int(v) for k, v in value.items() if v}


async def reactions_of(session: AsyncSession, principal: Principal | None, post_id: uuid.UUID) -> dict[str, Any]:
    await get_post(session, principal, post_id)
    counts = _counts(await session.scalar(select(PostStats.reactions).where(PostStats.post_id == post_id)))
    viewer = viewer_id(principal)
    mine: list[str] = []
    if viewer:
        mine = list(
            (
                await session.scalars(
                    select(Reaction.kind)
                    .where(Reaction.post_id == post_id, Reaction.user_id == viewer)
                    .order_by(Reaction.kind)
                )
            ).all()
        )
    return {"post_id": post_id, "counts": counts, "mine": mine}


