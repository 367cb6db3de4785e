"""Reads of lists: public, author, tag and category timelines, the home timeline, the author's own posts,
search. All keyset-paginated (`limit`, `cursor` → items, next_cursor), newest first (search: best first).
"""

from __future__ import annotations

import html
import uuid
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from quark_blog.common import (
    SUMMARY_COLUMNS,
    SUMMARY_FROM,
    normalize_tag_param,
    summary_from_row,
    summary_from_values,
)
from quark_blog.models import SEARCH_CONFIG, Category, Post, Tag
from quark_blog.reading import find_author
from quark_blog.runtime import BlogRuntime
from quark_blog.timeline import from_score, score_of
from quark_blog.visibility import (
    can_see_sql,
    in_home_sql,
    in_public_timeline_sql,
    listed_sql,
    post_listed_sql,
    reaches_followers_sql,
)
from quark_sdk.errors import InvalidInput, NotFound
from quark_sdk.pagination import decode_cursor, encode_cursor, page_of

Page = tuple[list[dict[str, Any]], str | None]


def _time_cursor(item: dict[str, Any]) -> str:
    return encode_cursor(score_of(item["published_at"]), item["id"])


def _after(cursor: str | None, params: dict[str, Any], column: str = "p.published_at") -> str:
    if not cursor:
        return ""
    score, ident = decode_cursor(cursor, (int, uuid.UUID))
    params["c_at"], params["c_id"] = from_score(score), ident
    return f" AND ({column}, p.id) < (:c_at, :c_id)"


async def _listing(session: AsyncSession, where: str, params: dict[str, Any], limit: int, cursor: str | None) -> Page:
    params = {**params, "lim": limit + 1}
    sql = (
        f"SELECT {SUMMARY_COLUMNS} {SUMMARY_FROM} WHERE {where}{_after(cursor, params)} "
        f"ORDER BY p.published_at DESC, p.id DESC LIMIT :lim"
    )
    rows = (await session.execute(text(sql), params)).mappings().all()
    return page_of([summary_from_row(r) for r in rows], limit, _time_cursor)


def _visible(viewer: str | None) -> str:
    return f"{listed_sql()} AND {can_see_sql(':viewer' if viewer else None)}"


async def public_timeline(session: AsyncSession, viewer: str | None, limit: int, cursor: str | None) -> Page:
    where = in_public_timeline_sql(":viewer" if viewer else None)
    return await _listing(session, where, {"viewer": viewer or ""}, limit, cursor)


async def author_timeline(
    session: AsyncSession, viewer: str | None, username: str, limit: int, cursor: str | None
) -> Page:
    author = await find_author(session, username)
    where = f"p.author_id = :author AND {_visible(viewer)}"
    return await _listing(session, where, {"author": author.user_id, "viewer": viewer or ""}, limit, cursor)


async def tag_timeline(
    session: AsyncSession, viewer: str | None, tag: str, limit: int, cursor: str | None
) -> Page:
    name = normalize_tag_param(tag)
    if await session.get(Tag, name) is None:
        raise NotFound(f"unknown tag {name!r}")
    where = f"p.tags @> ARRAY[CAST(:tag AS varchar)] AND {_visible(viewer)}"
    return await _listing(session, where, {"tag": name, "viewer": viewer or ""}, limit, cursor)


async def category_timeline(
    session: AsyncSession, viewer: str | None, slug: str, limit: int, cursor: str | None
) -> Page:
    if await session.get(Category, slug) is None:
        raise NotFound(f"unknown category {slug[:64]!r}")
    where = f"p.category = :cat AND {_visible(viewer)}"
    return await _listing(session, where, {"cat": slug, "viewer": viewer or ""}, limit, cursor)


async def my_posts(
    session: AsyncSession, user_id: str, status: str | None, limit: int, cursor: str | None
) -> tuple[list[Post], str | None]:
    q = select(Post).where(Post.author_id == user_id, Post.deleted_at.is_(None))
    if status:
        q = q.where(Post.status == status)
    if cursor:
        score, ident = decode_cursor(cursor, (int, uuid.UUID))
        from sqlalchemy import tuple_

        q = q.where(tuple_(Post.created_at, Post.id) < tuple_(from_score(score), ident))
    rows = list((await session.scalars(q.order_by(Post.created_at.desc(), Post.id.desc()).limit(limit + 1))).all())
    return page_of(rows, limit, lambda p: encode_cursor(score_of(p.created_at), p.id))


# --------------------------------------------------------------------------- tags and categories


async def list_tags(session: AsyncSession, limit: int, cursor: str | None, prefix: str | None) -> Page:
    params: dict[str, Any] = {"lim": limit + 1}
    where = "true"
    if prefix:
        params["prefix"] = prefix.lower().replace("\\", "").replace("%", "").replace("_", "\\_") + "%"
        where += " AND name LIKE :prefix"
    if cursor:
        count, name = decode_cursor(cursor, (int, str))
        params["c_n"], params["c_name"] = count, name
        where += " AND (post_count < :c_n OR (post_count = :c_n AND name > :c_name))"
    rows = (
        (
            await session.execute(
                text(f"SELECT name, post_count FROM tags WHERE {where} ORDER BY post_count DESC, name LIMIT :lim"),  # noqa: S608
                params,
            )
        )
        .mappings()
        .all()
    )
    return page_of([dict(r) for r in rows], limit, lambda t: encode_cursor(t["post_count"], t["name"]))


async def list_categories(session: AsyncSession, limit: int, cursor: str | None) -> Page:
    q = select(Category)
    if cursor:
        (slug,) = decode_cursor(cursor, (str,))
        q = q.where(Category.slug > slug)
    rows = (await session.scalars(q.order_by(Category.slug).limit(limit + 1))).all()
    items = [{"slug": c.slug, "name": c.name, "description": c.description, "post_count": c.post_count} for c in rows]
    return page_of(items, limit, lambda c: encode_cursor(c["slug"]))


# --------------------------------------------------------------------------- home timeline

_MAX_ID = "ffffffff-ffff-ffff-ffff-ffffffffffff"  # above every post id at a score: "all of that score"

HOME_VISIBLE = in_home_sql(":viewer")

# Newest `cap` posts of the viewer and everyone they follow: one index range per author, merged.
_HOME_SOURCES = """
    SELECT CAST(:viewer AS varchar) AS author_id
    UNION ALL SELECT f.followee_id FROM follows f WHERE f.follower_id = :viewer
"""


async def _home_from_db(
    session: AsyncSession, viewer: str, limit: int, after: tuple[int, str] | None
) -> list[dict[str, Any]]:
    params: dict[str, Any] = {"viewer": viewer, "lim": limit}
    cond = ""
    if after is not None:
        params["c_at"], params["c_id"] = from_score(after[0]), uuid.UUID(after[1])
        cond = " AND (x.published_at, x.id) < (:c_at, :c_id)"
    sql = f"""
        SELECT {SUMMARY_COLUMNS} FROM (
            SELECT x.id FROM ({_HOME_SOURCES}) src
            CROSS JOIN LATERAL (
                SELECT x.id, x.published_at FROM posts x
                WHERE x.author_id = src.author_id AND {post_listed_sql("x")} {cond}
                ORDER BY x.published_at DESC, x.id DESC LIMIT :lim
            ) x
            ORDER BY x.published_at DESC, x.id DESC LIMIT :lim
        ) ids
        JOIN posts p ON p.id = ids.id
        JOIN authors a ON a.user_id = p.author_id LEFT JOIN post_stats s ON s.post_id = p.id
        WHERE {HOME_VISIBLE}
        ORDER BY p.published_at DESC, p.id DESC"""  # noqa: S608
    rows = (await session.execute(text(sql), params)).mappings().all()
    return [summary_from_row(r) for r in rows]


async def _home_ids_for_rebuild(session: AsyncSession, viewer: str, cap: int) -> list[tuple[int, str]]:
    sql = f"""
        SELECT x.id, x.published_at FROM ({_HOME_SOURCES}) src
        CROSS JOIN LATERAL (
            SELECT x.id, x.published_at, x.visibility, x.author_id FROM posts x
            WHERE x.author_id = src.author_id AND {post_listed_sql("x")}
            ORDER BY x.published_at DESC, x.id DESC LIMIT :cap
        ) x
        WHERE x.author_id = :viewer OR {reaches_followers_sql("x")}
        ORDER BY x.published_at DESC, x.id DESC LIMIT :cap"""  # noqa: S608
    rows = (await session.execute(text(sql), {"viewer": viewer, "cap": cap})).all()
    return [(score_of(r.published_at), str(r.id)) for r in rows]


_HYDRATE_RAW = f"SELECT {SUMMARY_COLUMNS} {SUMMARY_FROM} WHERE p.id = ANY($1::uuid[]) AND " + in_home_sql(
    "$2::varchar"
)


async def _hydrate(rt: BlogRuntime, ids: list[str], viewer: str) -> list[dict[str, Any]]:
    """One asyncpg round trip, no transaction: the page's posts that the viewer may still see."""
    pool = await rt.read_pool()
    rows = await pool.fetch(_HYDRATE_RAW, ids, viewer)
    return [summary_from_values(r) for r in rows]


async def home_timeline(rt: BlogRuntime, viewer: str, limit: int, cursor: str | None) -> Page:
    """Posts of followed authors (and the viewer's own), from the fanned-out Redis set, database-checked."""
    tl = rt.timelines
    pos: tuple[int, str] | None = None
    if cursor:
        score, ident = decode_cursor(cursor, (int, uuid.UUID))
        pos = (score, str(ident))
    want = limit + 1
    window = want + 4
    items: list[dict[str, Any]] = []
    state = await tl.read(viewer, max_score=pos[0] if pos else None, count=window)
    if state is None:
        # Cold: mark warm first (fan-outs from now on land in the set), then fill it from the database.
        await tl.begin_rebuild(viewer)
        async with rt.ctx.database().session() as session:
            entries = await _home_ids_for_rebuild(session, viewer, tl.cap)
        await tl.finish_rebuild(viewer, entries, complete=len(entries) < tl.cap)
        state = await tl.read(viewer, max_score=pos[0] if pos else None, count=window)
        if state is None:  # expired or flushed in between: serve from the database alone
            async with rt.ctx.database().session() as session:
                return page_of(await _home_from_db(session, viewer, want, pos), limit, _time_cursor)
    floor, batch = state
    # Whether the page must continue from the database: the set ends at a floor (it was trimmed),
    # it vanished meanwhile, or a long run of stale entries outlasted the read budget.
    from_db = True
    for _ in range(20):
        fetched = len(batch)
        at_floor = floor > 0 and any(sc <= floor for sc, _ in batch)
        if at_floor:  # entries at or below the floor may be incomplete (a trim can split equal scores)
            batch = [(sc, m) for sc, m in batch if sc > floor]
        if pos is not None:
            batch = [(sc, m) for sc, m in batch if (sc, m) < pos]
        consumed = True
        if batch:
            # Hydrate only what the page still needs: the window's spare entries are for stale ones.
            head = batch[: want - len(items)]
            consumed = len(head) == len(batch)
            found = {str(r["id"]): r for r in await _hydrate(rt, [m for _, m in head], viewer)}
            items.extend(found[m] for _, m in head if m in found)
            pos = head[-1]
        if len(items) >= want:
            from_db = False
            break
        if consumed and (at_floor or fetched < window):
            from_db = floor > 0
            break
        if not batch:  # a run of equal scores longer than the window: step below it
            assert pos is not None
            pos = (pos[0] - 1, _MAX_ID)
        nxt = await tl.read(viewer, max_score=pos[0] if pos else None, count=window)
        if nxt is None:
            break
        floor, batch = nxt
    if len(items) < want and from_db:
        async with rt.ctx.database().session() as session:
            items.extend(await _home_from_db(session, viewer, want - len(items), pos))
    return page_of(items[:want], limit, _time_cursor)


def page_json(items: list[dict[str, Any]], next_cursor: str | None) -> bytes:
    """The page as JSON bytes (orjson: datetimes and UUIDs natively, ~10x faster than json.dumps)."""
    return orjson.dumps({"items": items, "next_cursor": next_cursor}, default=_json_default)


def _json_default(value: Any) -> Any:
    if isinstance(value, uuid.UUID):  # asyncpg's own UUID subclass
        return str(value)
    raise TypeError(f"cannot serialise {type(value).__name__}")


# --------------------------------------------------------------------------- search

_SNIPPET_OPTS = "StartSel=\x02, StopSel=\x03, MaxWords=35, MinWords=15, MaxFragments=2, FragmentDelimiter=\x04"


def _snippet(raw: str | None) -> str:
    escaped = html.escape(raw or "", quote=False)
    return escaped.replace("\x02", "<mark>").replace("\x03", "</mark>").replace("\x04", " … ")


def _utc(value: datetime | None, name: str) -> datetime | None:
    """A filter time in UTC (naive means UTC); one with no UTC equivalent (beyond year 1..9999) is a 422."""
    if value is None:
        return None
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except (OverflowError, ValueError):
        raise InvalidInput(f"{name} is out of range", field=name) from None


async def search_posts(
    session: AsyncSession,
    viewer: str | None,
    *,
    q: str,
    tag: str | None,
    author: str | None,
    since: datetime | None,
    until: datetime | None,
    limit: int,
    cursor: str | None,
    category: str | None = None,
) -> Page:
    query = " ".join(q.split())
    if not query:
        raise InvalidInput("q is empty", field="q")
    params: dict[str, Any] = {"q": query, "viewer": viewer or "", "lim": limit + 1, "opts": _SNIPPET_OPTS}
    where = [listed_sql(), can_see_sql(":viewer" if viewer else None), "p.search @@ query"]
    if tag:
        params["tag"] = normalize_tag_param(tag)
        where.append("p.tags @> ARRAY[CAST(:tag AS varchar)]")
    if category:
        params["category"] = category
        where.append("p.category = :category")
    if author:
        params["author"] = author.lower()
        where.append("lower(a.username) = :author")
    since = _utc(since, "since")
    until = _utc(until, "until")
    if since:
        params["since"] = since
        where.append("p.published_at >= :since")
    if until:
        params["until"] = until
        where.append("p.published_at < :until")
    if since and until and until <= since:
        raise InvalidInput("until must be after since", field="until")
    outer = ""
    if cursor:
        rank, ident = decode_cursor(cursor, (float, uuid.UUID))
        params["c_rank"], params["c_id"] = rank, ident
        outer = "WHERE (r.rank, r.id) < (:c_rank, :c_id)"
    sql = f"""
        WITH matches AS (
            SELECT {SUMMARY_COLUMNS}, p.body_text,
                   CAST(ts_rank_cd(p.search, query, 1) AS float8) AS rank, query
            {SUMMARY_FROM} CROSS JOIN websearch_to_tsquery('{SEARCH_CONFIG}', :q) query
            WHERE {" AND ".join(where)}
        ), page AS (
            SELECT * FROM matches r {outer} ORDER BY r.rank DESC, r.id DESC LIMIT :lim
        )
        SELECT page.*, ts_headline('{SEARCH_CONFIG}', page.body_text, page.query, :opts) AS snippet
        FROM page ORDER BY page.rank DESC, page.id DESC"""  # noqa: S608
    rows = (await session.execute(text(sql), params)).mappings().all()
    items = []
    for r in rows:
        item = summary_from_row(r)
        item["rank"] = r["rank"]
        item["snippet"] = _snippet(r["snippet"])
        items.append(item)
    return page_of(items, limit, lambda i: encode_cursor(i["rank"], i["id"]))
