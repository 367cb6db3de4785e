"""Business logic of posts: plain functions over a session, no HTTP types (reactions and categories have
their own modules).

Every write opens one transaction holding the state change, its counters and its
event (outbox); a rejected request raises before commit, so nothing changes.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from redis.exceptions import RedisError
from sqlalchemy import func, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from quark_blog import render
from quark_blog.common import (
    CountState,
    apply_count_changes,
    check_media_ids,
    ensure_tags,
    normalize_tags,
)
from quark_blog.models import Author, Category, Post, PostStats
from quark_blog.reading import can_see
from quark_blog.runtime import BlogRuntime
from quark_blog.schemas import (
    PostCreate,
    PostDeleted,
    PostHidden,
    PostPublished,
    PostRestored,
    PostUnpublished,
    PostUpdate,
    PostUpdated,
)
from quark_blog.timeline import score_of
from quark_sdk.auth import Principal
from quark_sdk.errors import Conflict, InvalidInput, NotFound, PayloadTooLarge, PermissionDenied
from quark_sdk.outbox import add_event

# --------------------------------------------------------------------------- authors


async def ensure_author(session: AsyncSession, principal: Principal) -> Author:
    """The caller's author row (created from the token if no event has seeded it yet); 403 when suspended."""
    uid = principal.subject  # a user: the route took WritingUser
    author = await session.get(Author, uid)
    if author is None:
        username = (principal.username or uid)[:64]
        await session.execute(
            text("INSERT INTO authors (user_id, username) VALUES (:u, :n) ON CONFLICT (user_id) DO NOTHING"),
            {"u": uid, "n": username},
        )
        author = await session.get(Author, uid)
        assert author is not None
    if author.deleted:
        raise PermissionDenied("account deleted")
    if author.suspended:
        raise PermissionDenied("account suspended")
    return author


async def check_writer(rt: BlogRuntime, uid: str) -> None:
    """Rate limit of writes per user (Redis sliding window, shared by every instance)."""
    s = rt.settings
    await rt.limiter.check(
        f"write:{uid}",
        limit=s.write_rate_limit,
        window=s.write_rate_window,
        detail=f"too many writes: at most {s.write_rate_limit} per {s.write_rate_window:g}s",
    )


# --------------------------------------------------------------------------- bodies


def render_checked(body: str, body_format: str, max_chars: int, what: str = "body") -> tuple[str, str]:
    """(safe html, plain text); 413 when too long, 422 when nothing is left after sanitising."""
    if len(body) > max_chars:
        raise PayloadTooLarge(f"{what} is longer than {max_chars} characters", extra={"limit": max_chars})
    safe = render.render_body(body, "html" if body_format == "html" else "markdown")
    plain = render.html_to_text(safe)
    if not render.has_content(safe, plain):
        raise InvalidInput(f"{what} is empty (after removing unsafe markup)", field=what)
    return safe, plain


def render_preview(body: str, body_format: str, max_chars: int) -> str:
    """Safe HTML of a body being edited (empty is fine: nothing written yet); 413 when too long."""
    if len(body) > max_chars:
        raise PayloadTooLarge(f"body is longer than {max_chars} characters", extra={"limit": max_chars})
    return render.render_body(body, "html" if body_format == "html" else "markdown") if body.strip() else ""


def _clean_title(title: str) -> str:
    cleaned = render.clean_plain(title)
    if not cleaned:
        raise InvalidInput("title is empty", field="title")
    return cleaned


async def _check_category(session: AsyncSession, category: str | None) -> None:
    if category is not None and await session.get(Category, category) is None:
        raise InvalidInput(f"unknown category {category[:64]!r}", field="category")


async def _slug_taken(session: AsyncSession, author_id: str, slug: str, exclude: uuid.UUID | None = None) -> bool:
    q = select(Post.id).where(Post.author_id == author_id, Post.slug == slug, Post.deleted_at.is_(None))
    if exclude is not None:
        q = q.where(Post.id != exclude)
    return (await session.scalar(q.limit(1))) is not None


async def _free_slug(session: AsyncSession, author_id: str, base: str) -> str:
    rows = await session.scalars(
        select(Post.slug).where(
            Post.author_id == author_id,
            Post.deleted_at.is_(None),
            Post.slug.like(base.replace("%", "").replace("_", r"\_") + "%"),
        )
    )
    taken = set(rows.all())
    if base not in taken:
        return base
    n = 2
    while f"{base}-{n}" in taken:
        n += 1
    return f"{base}-{n}"


def _published_event(post: Post, author: Author, body_cap: int) -> PostPublished:
    assert post.published_at is not None
    return PostPublished(
        post_id=str(post.id),
        author_id=post.author_id,
        author_username=author.username,
        title=post.title,
        slug=post.slug,
        excerpt=post.excerpt,
        body_text=post.body_text[:body_cap],
        tags=list(post.tags),
        category=post.category,
        visibility=post.visibility,
        media_ids=list(post.media_ids),
        published_at=post.published_at,
    )


def _updated_event(post: Post, body_cap: int) -> PostUpdated:
    return PostUpdated(
        post_id=str(post.id),
        author_id=post.author_id,
        title=post.title,
        slug=post.slug,
        excerpt=post.excerpt,
        body_text=post.body_text[:body_cap],
        tags=list(post.tags),
        category=post.category,
        visibility=post.visibility,
        media_ids=list(post.media_ids),
        updated_at=post.updated_at,
    )


def _is_slug_violation(exc: IntegrityError) -> bool:
    return "uq_posts_author_slug" in str(exc.orig)


# --------------------------------------------------------------------------- posts: writes


async def create_post(rt: BlogRuntime, session: AsyncSession, principal: Principal, body: PostCreate) -> Post:
    s = rt.settings
    title = _clean_title(body.title)
    tags = normalize_tags(body.tags)
    media = check_media_ids(body.media_ids)
    safe, plain = render_checked(body.body, body.format, s.max_body_chars)
    excerpt = render.clean_plain(body.excerpt) if body.excerpt else ""
    now = rt.now()
    if body.publish and body.scheduled_at is not None:
        raise InvalidInput("give either publish or scheduled_at, not both", field="scheduled_at")
    if body.scheduled_at is not None and body.scheduled_at <= now:
        raise InvalidInput("scheduled_at must be in the future", field="scheduled_at")
    status = "published" if body.publish else "scheduled" if body.scheduled_at else "draft"
    try:
        async with session.begin():
            author = await ensure_author(session, principal)
            await _check_category(session, body.category)
            if body.slug is not None:
                if await _slug_taken(session, author.user_id, body.slug):
                    raise Conflict(f"you already have a post with slug {body.slug!r}", code="duplicate-slug")
                slug = body.slug
            else:
                slug = await _free_slug(session, author.user_id, render.slugify(title))
            post = Post(
                id=uuid.uuid4(),
                author_id=author.user_id,
                slug=slug,
                title=title,
                body_format=body.format,
                body_source=body.body,
                body_html=safe,
                body_text=plain,
                excerpt=excerpt or render.make_excerpt(plain),
                excerpt_custom=bool(excerpt),
                tags=tags,
                tags_text=" ".join(tags),
                category=body.category,
                media_ids=media,
                visibility=body.visibility,
                status=status,
                scheduled_at=body.scheduled_at,
                published_at=now if status == "published" else None,
                created_at=now,
                updated_at=now,
                deleted_at=None,
                hidden=False,
            )
            session.add(post)
            session.add(PostStats(post_id=post.id, comment_count=0, reactions={}))
            await session.flush()
            await ensure_tags(session, tags)
            await apply_count_changes(session, None, CountState.of(post))
            if status == "published":
                await add_event(session, _published_event(post, author, s.event_body_text_max), subject=str(post.id))
    except IntegrityError as exc:
        if _is_slug_violation(exc):
            raise Conflict("you already have a post with this slug", code="duplicate-slug") from None
        raise
    if status == "scheduled":
        rt.wake_scheduler.set()
    elif status == "published":
        await _show_to_author(rt, post)
    return post


async def _lock_own_post(session: AsyncSession, principal: Principal, post_id: uuid.UUID) -> Post:
    """The caller's post, row-locked; 404 when it does not exist (or is not visible), 403 when not theirs."""
    uid = principal.subject  # a user: the route took WritingUser
    post = await session.scalar(select(Post).where(Post.id == post_id, Post.deleted_at.is_(None)).with_for_update())
    if post is None:
        raise NotFound("post not found")
    if post.author_id != uid:
        if post.status != "published" or not await can_see(session, principal, post):
            raise NotFound("post not found")
        raise PermissionDenied("only the author can change this post")
    return post


async def update_post(
    rt: BlogRuntime, session: AsyncSession, principal: Principal, post_id: uuid.UUID, body: PostUpdate
) -> Post:
    s = rt.settings
    fields = body.model_fields_set
    if not fields:
        raise InvalidInput("nothing to change")
    title = _clean_title(body.title) if body.title is not None else None
    tags = normalize_tags(body.tags) if body.tags is not None else None
    media = check_media_ids(body.media_ids) if body.media_ids is not None else None
    for name in ("title", "body", "format", "tags", "media_ids", "visibility", "slug"):
        if name in fields and getattr(body, name) is None:
            raise InvalidInput(f"{name} cannot be null", field=name)
    try:
        async with session.begin():
            await ensure_author(session, principal)
            post = await _lock_own_post(session, principal, post_id)
            before = CountState.of(post)
            if body.body is not None or body.format is not None:
                source = body.body if body.body is not None else post.body_source
                fmt = body.format or post.body_format
                safe, plain = render_checked(source, fmt, s.max_body_chars)
                post.body_source, post.body_format, post.body_html, post.body_text = source, fmt, safe, plain
            if title is not None:
                post.title = title
            if "excerpt" in fields:
                excerpt = render.clean_plain(body.excerpt) if body.excerpt else ""
                post.excerpt_custom = bool(excerpt)
                post.excerpt = excerpt
            if not post.excerpt_custom:
                post.excerpt = render.make_excerpt(post.body_text)
            if body.slug is not None and body.slug != post.slug:
                if await _slug_taken(session, post.author_id, body.slug, exclude=post.id):
                    raise Conflict(f"you already have a post with slug {body.slug!r}", code="duplicate-slug")
                post.slug = body.slug
            if tags is not None:
                post.tags, post.tags_text = tags, " ".join(tags)
                await ensure_tags(session, tags)
            if "category" in fields:
                await _check_category(session, body.category)
                post.category = body.category
            if media is not None:
                post.media_ids = media
            if body.visibility is not None:
                post.visibility = body.visibility
            post.updated_at = rt.now()
            await session.flush()
            await apply_count_changes(session, before, CountState.of(post))
            if post.status == "published":
                await add_event(session, _updated_event(post, s.event_body_text_max), subject=str(post.id))
    except IntegrityError as exc:
        if _is_slug_violation(exc):
            raise Conflict("you already have a post with this slug", code="duplicate-slug") from None
        raise
    return post


async def _publish_locked(rt: BlogRuntime, session: AsyncSession, post: Post, now: datetime) -> None:
    author = await session.get(Author, post.author_id)
    assert author is not None
    before = CountState.of(post)
    post.status, post.published_at, post.scheduled_at, post.updated_at = "published", now, None, now
    await session.flush()
    await apply_count_changes(session, before, CountState.of(post))
    await add_event(session, _published_event(post, author, rt.settings.event_body_text_max), subject=str(post.id))


async def publish_post(rt: BlogRuntime, session: AsyncSession, principal: Principal, post_id: uuid.UUID) -> Post:
    async with session.begin():
        await ensure_author(session, principal)
        post = await _lock_own_post(session, principal, post_id)
        if post.status == "published":
            raise Conflict("post is already published")
        await _publish_locked(rt, session, post, rt.now())
    await _show_to_author(rt, post)
    return post


async def _show_to_author(rt: BlogRuntime, post: Post) -> None:
    """Read your own writes: the author's warm home timeline gets the post now, not when the fan-out consumer
    reaches its event (it adds the same entry again, idempotently, and removes it if the post left meanwhile;
    reads hydrate from PostgreSQL, so an entry that went stale is never shown)."""
    if post.published_at is None:
        return
    try:
        await rt.timelines.add([post.author_id], [(score_of(post.published_at), str(post.id))])
    except (RedisError, OSError):  # a cache write; the post is committed and its event is in the outbox
        return


async def schedule_post(
    rt: BlogRuntime, session: AsyncSession, principal: Principal, post_id: uuid.UUID, at: datetime
) -> Post:
    if at <= rt.now():
        raise InvalidInput("the time must be in the future", field="at")
    async with session.begin():
        await ensure_author(session, principal)
        post = await _lock_own_post(session, principal, post_id)
        if post.status == "published":
            raise Conflict("post is already published (unpublish it first)")
        post.status, post.scheduled_at, post.updated_at = "scheduled", at, rt.now()
    rt.wake_scheduler.set()
    return post


async def unpublish_post(rt: BlogRuntime, session: AsyncSession, principal: Principal, post_id: uuid.UUID) -> Post:
    async with session.begin():
        await ensure_author(session, principal)
        post = await _lock_own_post(session, principal, post_id)
        if post.status == "draft":
            raise Conflict("post is not published")
        before = CountState.of(post)
        was_published = post.status == "published"
        post.status, post.published_at, post.scheduled_at, post.updated_at = "draft", None, None, rt.now()
        await session.flush()
        await apply_count_changes(session, before, CountState.of(post))
        if was_published:
            await add_event(
                session, PostUnpublished(post_id=str(post.id), author_id=post.author_id), subject=str(post.id)
            )
    return post


async def delete_post(rt: BlogRuntime, session: AsyncSession, principal: Principal, post_id: uuid.UUID) -> None:
    async with session.begin():
        post = await _lock_own_post(session, principal, post_id)
        await remove_post(rt, session, post)


async def remove_post(rt: BlogRuntime, session: AsyncSession, post: Post) -> None:
    """Delete a locked post (its author, or a moderator's decision); the caller's transaction must be open."""
    before = CountState.of(post)
    was_published = post.status == "published"
    post.deleted_at = post.updated_at = rt.now()
    await session.flush()
    await apply_count_changes(session, before, None)
    if was_published:
        await add_event(session, PostDeleted(post_id=str(post.id), author_id=post.author_id), subject=str(post.id))


async def publish_due_posts(rt: BlogRuntime, now: datetime | None = None, limit: int | None = None) -> list[uuid.UUID]:
    """Publish scheduled posts whose time has come; safe with several instances (FOR UPDATE SKIP LOCKED)."""
    now = now or rt.now()
    async with rt.ctx.database().transaction() as session:
        posts = (
            await session.scalars(
                select(Post)
                .where(Post.status == "scheduled", Post.deleted_at.is_(None), Post.scheduled_at <= now)
                .order_by(Post.scheduled_at, Post.id)
                .limit(limit or rt.settings.scheduler_batch)
                .with_for_update(skip_locked=True)
            )
        ).all()
        for post in posts:
            await _publish_locked(rt, session, post, now)
        return [p.id for p in posts]


async def next_scheduled_at(rt: BlogRuntime) -> datetime | None:
    async with rt.ctx.database().session() as session:
        value: datetime | None = await session.scalar(
            select(func.min(Post.scheduled_at)).where(Post.status == "scheduled", Post.deleted_at.is_(None))
        )
        return value


# --------------------------------------------------------------------------- moderation of posts


async def set_post_hidden(
    rt: BlogRuntime,
    session: AsyncSession,
    post_id: uuid.UUID,
    *,
    hidden: bool,
    actor_id: str | None,
    reason: str | None,
    resolve_reports: bool = True,
) -> Post:
    """Hide (pending review) or restore a post; the caller's transaction must be open."""
    post = await session.scalar(select(Post).where(Post.id == post_id, Post.deleted_at.is_(None)).with_for_update())
    if post is None:
        raise NotFound("post not found")
    if post.hidden == hidden:
        raise Conflict("post is already hidden" if hidden else "post is not hidden")
    before = CountState.of(post)
    now = rt.now()
    reason = render.clean_plain(reason) if reason else None
    post.hidden = hidden
    post.hidden_reason, post.hidden_by, post.hidden_at = (reason, actor_id, now) if hidden else (None, None, None)
    await session.flush()
    await apply_count_changes(session, before, CountState.of(post))
    payload: PostHidden | PostRestored
    if hidden:
        payload = PostHidden(post_id=str(post.id), author_id=post.author_id, actor_id=actor_id, reason=reason)
    else:
        payload = PostRestored(post_id=str(post.id), author_id=post.author_id, actor_id=actor_id, reason=reason)
    await add_event(session, payload, subject=str(post.id))
    if resolve_reports and actor_id is not None:
        await session.execute(
            text(
                "UPDATE reports SET status = 'resolved', resolution = :res, resolved_at = :now, resolved_by = :by "
                "WHERE target_type = 'post' AND target_id = :id AND status = 'open'"
            ),
            {"res": "hidden" if hidden else "restored", "now": now, "by": actor_id, "id": post.id},
        )
    return post


async def moderate_post(
    rt: BlogRuntime,
    session: AsyncSession,
    principal: Principal,
    post_id: uuid.UUID,
    *,
    hidden: bool,
    reason: str | None,
) -> Post:
    async with session.begin():
        return await set_post_hidden(rt, session, post_id, hidden=hidden, actor_id=principal.subject, reason=reason)
