"""The local replica of users (names, privacy, suspension), the follow graph and blocks, fed by
quark.auth.* / quark.user.* events; and the timeline side effects of graph and post changes.

Every function runs inside the consumer's transaction and is idempotent: upserts, deletes,
ON CONFLICT DO NOTHING, and Redis writes that can be repeated (ZADD of the same score, ZREM).
"""

from __future__ import annotations

import uuid

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from quark_blog.common import CountState, apply_count_changes
from quark_blog.models import Post
from quark_blog.runtime import BlogRuntime
from quark_blog.schemas import PostDeleted
from quark_blog.timeline import score_of
from quark_blog.visibility import post_listed, post_listed_sql, reaches_followers, reaches_followers_sql
from quark_sdk.outbox import add_event

# --------------------------------------------------------------------------- authors


async def seed_author(session: AsyncSession, user_id: str, username: str, display_name: str | None) -> None:
    """From registration: create the author if unknown (a later profile event is authoritative)."""
    await session.execute(
        text(
            "INSERT INTO authors (user_id, username, display_name) VALUES (:u, :n, :d) ON CONFLICT (user_id) DO NOTHING"
        ),
        {"u": user_id, "n": username[:64], "d": (display_name or None) and display_name[:200]},
    )


async def upsert_author(
    session: AsyncSession, user_id: str, username: str, display_name: str | None, privacy: str | None = None
) -> None:
    await session.execute(
        text("""INSERT INTO authors (user_id, username, display_name, privacy, updated_at)
                VALUES (:u, :n, :d, coalesce(:p, 'public'), now())
                ON CONFLICT (user_id) DO UPDATE SET username = EXCLUDED.username,
                    display_name = EXCLUDED.display_name,
                    privacy = coalesce(:p, authors.privacy), updated_at = now()
                WHERE NOT authors.deleted"""),
        {"u": user_id, "n": username[:64], "d": (display_name or None) and display_name[:200], "p": privacy},
    )


async def set_suspended(session: AsyncSession, user_id: str, suspended: bool) -> None:
    await session.execute(
        text(
            "INSERT INTO authors (user_id, username, suspended) VALUES (:u, :u, :s) "
            "ON CONFLICT (user_id) DO UPDATE SET suspended = :s, updated_at = now()"
        ),
        {"u": user_id, "s": suspended},
    )


# --------------------------------------------------------------------------- graph


async def _recent_post_entries(
    session: AsyncSession, author_id: str, cap: int, include_private: bool = False
) -> list[tuple[int, str]]:
    rows = (
        await session.execute(
            text(
                f"SELECT id, published_at FROM posts WHERE author_id = :a AND {post_listed_sql('posts')} "  # noqa: S608
                f"AND (:priv OR {reaches_followers_sql('posts')}) ORDER BY published_at DESC, id DESC LIMIT :cap"
            ),
            {"a": author_id, "cap": cap, "priv": include_private},
        )
    ).all()
    return [(score_of(r.published_at), str(r.id)) for r in rows]


async def _all_post_ids(session: AsyncSession, author_id: str, limit: int = 100_000) -> list[str]:
    rows = await session.scalars(
        select(Post.id)
        .where(Post.author_id == author_id, Post.published_at.is_not(None))
        .order_by(Post.published_at.desc())
        .limit(limit)
    )
    return [str(i) for i in rows.all()]


async def _followers(session: AsyncSession, author_id: str) -> list[str]:
    rows = await session.scalars(text("SELECT follower_id FROM follows WHERE followee_id = :a"), {"a": author_id})
    return list(rows.all())


async def follow(rt: BlogRuntime, session: AsyncSession, follower_id: str, followee_id: str) -> None:
    blocked = (
        await session.execute(
            text(
                "SELECT 1 FROM blocks WHERE (blocker_id = :a AND blocked_id = :b) "
                "OR (blocker_id = :b AND blocked_id = :a)"
            ),
            {"a": follower_id, "b": followee_id},
        )
    ).first()
    if blocked is not None or follower_id == followee_id:
        return
    await session.execute(
        text("INSERT INTO follows (follower_id, followee_id) VALUES (:a, :b) ON CONFLICT DO NOTHING"),
        {"a": follower_id, "b": followee_id},
    )
    # Backfill: the followee's recent posts join the follower's (warm) timeline at once.
    entries = await _recent_post_entries(session, followee_id, rt.timelines.cap)
    await rt.timelines.add([follower_id], entries)


async def unfollow(rt: BlogRuntime, session: AsyncSession, follower_id: str, followee_id: str) -> None:
    await session.execute(
        text("DELETE FROM follows WHERE follower_id = :a AND followee_id = :b"), {"a": follower_id, "b": followee_id}
    )
    await rt.timelines.remove([follower_id], await _all_post_ids(session, followee_id, rt.timelines.cap * 4))


async def block(rt: BlogRuntime, session: AsyncSession, blocker_id: str, blocked_id: str) -> None:
    await session.execute(
        text("INSERT INTO blocks (blocker_id, blocked_id) VALUES (:a, :b) ON CONFLICT DO NOTHING"),
        {"a": blocker_id, "b": blocked_id},
    )
    await session.execute(
        text(
            "DELETE FROM follows WHERE (follower_id = :a AND followee_id = :b) "
            "OR (follower_id = :b AND followee_id = :a)"
        ),
        {"a": blocker_id, "b": blocked_id},
    )
    cap = rt.timelines.cap * 4
    await rt.timelines.remove([blocker_id], await _all_post_ids(session, blocked_id, cap))
    await rt.timelines.remove([blocked_id], await _all_post_ids(session, blocker_id, cap))


async def unblock(session: AsyncSession, blocker_id: str, blocked_id: str) -> None:
    await session.execute(
        text("DELETE FROM blocks WHERE blocker_id = :a AND blocked_id = :b"), {"a": blocker_id, "b": blocked_id}
    )


# --------------------------------------------------------------------------- account deletion


async def delete_user(rt: BlogRuntime, session: AsyncSession, user_id: str) -> None:
    """Remove the user's content and nothing of anyone else's: their posts go (a post others commented on
    stays as an empty, deleted tombstone holding those comments), their comments become anonymous
    tombstones, their reactions, follows, blocks and timeline go; the author row stays as an anonymous
    tombstone. Other people's comments, replies and reactions elsewhere are untouched."""
    followers = await _followers(session, user_id)
    posts = (await session.scalars(select(Post).where(Post.author_id == user_id).with_for_update())).all()
    for post in posts:
        if post.deleted_at is None:
            await apply_count_changes(session, CountState.of(post), None)
        if post.status == "published" and post.deleted_at is None:
            await add_event(session, PostDeleted(post_id=str(post.id), author_id=user_id), subject=str(post.id))
    post_ids = [str(p.id) for p in posts]
    if posts:
        # Posts others commented on stay as empty tombstones, so those comments (the other people's
        # words) survive, orphaned: their authors keep them (GET /api/v1/comments/mine). The rest go.
        await session.execute(
            text("""
            UPDATE posts p SET title = '', slug = CAST(p.id AS varchar), body_source = '', body_html = '',
                body_text = '', excerpt = '', excerpt_custom = false, tags = '{}', tags_text = '', category = NULL,
                media_ids = '{}', hidden_reason = NULL, scheduled_at = NULL,
                deleted_at = coalesce(p.deleted_at, now()), updated_at = now()
            WHERE p.author_id = :u AND EXISTS (
                SELECT 1 FROM comments c WHERE c.post_id = p.id AND c.author_id IS NOT NULL AND c.author_id <> :u)"""),
            {"u": user_id},
        )
        await session.execute(
            text("""
            DELETE FROM posts p WHERE p.author_id = :u AND NOT EXISTS (
                SELECT 1 FROM comments c WHERE c.post_id = p.id AND c.author_id IS NOT NULL AND c.author_id <> :u)"""),
            {"u": user_id},
        )
    # Their comments elsewhere: anonymous tombstones, counts corrected.
    await session.execute(
        text("""
        UPDATE post_stats s SET comment_count = greatest(s.comment_count - c.n, 0)
        FROM (SELECT post_id, count(*) AS n FROM comments
              WHERE author_id = :u AND deleted_at IS NULL AND NOT hidden GROUP BY post_id) c
        WHERE s.post_id = c.post_id"""),
        {"u": user_id},
    )
    await session.execute(
        text(
            "UPDATE comments SET author_id = NULL, body_source = '', body_html = '', body_text = '', "
            "deleted_at = coalesce(deleted_at, now()) WHERE author_id = :u"
        ),
        {"u": user_id},
    )
    # Their reactions: counters down, rows gone.
    reactions = (
        await session.execute(text("DELETE FROM reactions WHERE user_id = :u RETURNING post_id, kind"), {"u": user_id})
    ).all()
    for post_id, kind in sorted(reactions):
        await session.execute(
            text(
                "UPDATE post_stats SET reactions = jsonb_set(reactions, ARRAY[CAST(:k AS text)], "
                "to_jsonb(greatest(coalesce((reactions->>CAST(:k AS text))::int, 0) - 1, 0))) WHERE post_id = :p"
            ),
            {"k": kind, "p": post_id},
        )
    await session.execute(text("DELETE FROM follows WHERE follower_id = :u OR followee_id = :u"), {"u": user_id})
    await session.execute(text("DELETE FROM blocks WHERE blocker_id = :u OR blocked_id = :u"), {"u": user_id})
    await session.execute(
        text(
            "INSERT INTO authors (user_id, username, deleted) VALUES (:u, :n, true) ON CONFLICT (user_id) "
            "DO UPDATE SET username = :n, display_name = NULL, deleted = true, updated_at = now()"
        ),
        {"u": user_id, "n": f"deleted-{uuid.uuid5(uuid.NAMESPACE_OID, user_id).hex[:12]}"},
    )
    await rt.timelines.remove(followers, post_ids)
    await rt.timelines.drop(user_id)


async def detach_media(session: AsyncSession, media_id: str) -> None:
    await session.execute(
        text(
            "UPDATE posts SET media_ids = array_remove(media_ids, CAST(:m AS varchar)) "
            "WHERE media_ids @> ARRAY[CAST(:m AS varchar)]"
        ),
        {"m": media_id},
    )


# --------------------------------------------------------------------------- post fan-out


async def sync_post(rt: BlogRuntime, session: AsyncSession, post_id: str) -> None:
    """Make the home timelines agree with the post's current state (its events only say *that* it changed)."""
    try:
        pid = uuid.UUID(post_id)
    except ValueError:
        return
    post = await session.get(Post, pid)
    if post is None:
        return  # deleted with its author: delete_user removed it from the timelines
    followers = await _followers(session, post.author_id)
    tl, chunk = rt.timelines, rt.settings.fanout_chunk
    listed = post_listed(post.status, post.deleted_at is not None, post.hidden)
    if not listed or post.published_at is None:
        await tl.remove([post.author_id, *followers], [str(pid)], chunk=chunk)
        return
    entry = [(score_of(post.published_at), str(pid))]
    await tl.add([post.author_id], entry)
    if not reaches_followers(post.visibility):
        await tl.remove(followers, [str(pid)], chunk=chunk)
    else:
        await tl.add(followers, entry, chunk=chunk)
