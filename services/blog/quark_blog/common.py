"""Small pieces shared by the service modules: tag rules, SQL fragments, row mapping (cursors: quark_sdk.pagination)."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from quark_blog.models import Post
from quark_blog.visibility import counted_publicly
from quark_sdk.auth import Principal
from quark_sdk.errors import InvalidInput

TAG_PATTERN = re.compile(r"^[a-z0-9](?:[a-z0-9_-]{0,38}[a-z0-9])?$")
MEDIA_ID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
CATEGORY_PATTERN = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
MODERATOR = "moderator"

# -- SQL fragments over `posts p JOIN authors a` ------------------------------------------------

SUMMARY_COLUMNS = """
    p.id, p.author_id, a.username, a.display_name, p.title, p.slug, p.excerpt, p.tags, p.category,
    p.media_ids, p.visibility, p.published_at,
    coalesce(s.comment_count, 0) AS comment_count, coalesce(s.reactions, '{}'::jsonb) AS reactions
"""
SUMMARY_KEYS = (
    "id", "author_id", "username", "display_name", "title", "slug", "excerpt", "tags", "category",
    "media_ids", "visibility", "published_at", "comment_count", "reactions",
)  # the columns of SUMMARY_COLUMNS, in order
SUMMARY_FROM = """
    FROM posts p JOIN authors a ON a.user_id = p.author_id LEFT JOIN post_stats s ON s.post_id = p.id
"""
def viewer_id(principal: Principal | None) -> str | None:
    if principal is None or principal.kind != "user":
        return None
    return principal.subject


def is_moderator(principal: Principal | None) -> bool:
    return principal is not None and principal.kind == "user" and principal.has_role(MODERATOR)


# -- text PostgreSQL can store -----------------------------------------------------------------------

_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def storable(value: str) -> bool:
    """PostgreSQL text cannot hold NUL, and a lone surrogate cannot be encoded at all."""
    return _UNSTORABLE.search(value) is None


def all_storable(value: Any) -> bool:
    if isinstance(value, str):
        return storable(value)
    if isinstance(value, dict):
        return all(all_storable(k) and all_storable(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return all(all_storable(v) for v in value)
    return True


# -- input rules -----------------------------------------------------------------------------------


def normalize_tags(tags: Iterable[str]) -> list[str]:
    out: list[str] = []
    for raw in tags:
        tag = raw.strip().lstrip("#").lower()
        if not TAG_PATTERN.match(tag):
            raise InvalidInput(f"invalid tag {raw[:50]!r}: 1-40 of a-z, 0-9, '-', '_'", field="tags")
        if tag not in out:
            out.append(tag)
    return out


def normalize_tag_param(tag: str) -> str:
    tag = tag.strip().lstrip("#").lower()
    if not TAG_PATTERN.match(tag):
        raise InvalidInput("invalid tag", field="tag")
    return tag


def check_media_ids(media_ids: Iterable[str]) -> list[str]:
    out: list[str] = []
    for m in media_ids:
        if not MEDIA_ID_PATTERN.match(m):
            raise InvalidInput(f"invalid media id {m[:70]!r}", field="media_ids")
        if m not in out:
            out.append(m)
    return out


# -- counts of tags and categories ------------------------------------------------------------


@dataclass(frozen=True)
class CountState:
    """What the tag and category counters see of a post: listed publicly, with which tags and category."""

    listed: bool
    tags: frozenset[str]
    category: str | None

    @staticmethod
    def of(post: Post) -> CountState:
        listed = counted_publicly(post.status, post.deleted_at is not None, post.hidden, post.visibility)
        return CountState(listed, frozenset(post.tags or ()), post.category)


async def apply_count_changes(session: AsyncSession, before: CountState | None, after: CountState | None) -> None:
    """Move tag/category counters from `before` to `after` (caller holds the post's row lock)."""
    tags: Counter[str] = Counter()
    cats: Counter[str] = Counter()
    for state, sign in ((before, -1), (after, 1)):
        if state is None or not state.listed:
            continue
        for t in state.tags:
            tags[t] += sign
        if state.category:
            cats[state.category] += sign
    for name in sorted(k for k, v in tags.items() if v):
        await session.execute(
            text("UPDATE tags SET post_count = greatest(post_count + :d, 0) WHERE name = :n"),
            {"d": tags[name], "n": name},
        )
    for slug in sorted(k for k, v in cats.items() if v):
        await session.execute(
            text("UPDATE categories SET post_count = greatest(post_count + :d, 0) WHERE slug = :n"),
            {"d": cats[slug], "n": slug},
        )


async def ensure_tags(session: AsyncSession, tags: Iterable[str]) -> None:
    names = sorted(set(tags))
    if names:
        await session.execute(
            text("INSERT INTO tags (name) SELECT unnest(CAST(:names AS varchar[])) ON CONFLICT (name) DO NOTHING"),
            {"names": names},
        )


# -- rows -> response dicts -------------------------------------------------------------------


def summary_from_row(row: Mapping[str, Any]) -> dict[str, Any]:
    return summary_from_values([row[key] for key in SUMMARY_KEYS])


def summary_from_values(values: Sequence[Any]) -> dict[str, Any]:
    """A post summary from the SUMMARY_COLUMNS values in order (an asyncpg Record starts with
    them): positional unpacking is the home timeline's hot path, ~40% cheaper than by name."""
    (post_id, author_id, username, display_name, title, slug, excerpt, tags, category, media_ids,
     visibility, published_at, comment_count, reactions) = values[:14]
    if isinstance(reactions, str):
        reactions = orjson.loads(reactions)
    return {
        "id": post_id,
        "author": {"user_id": author_id, "username": username, "display_name": display_name},
        "title": title,
        "slug": slug,
        "excerpt": excerpt,
        "tags": list(tags or ()),
        "category": category,
        "media_ids": list(media_ids or ()),
        "visibility": visibility,
        "published_at": published_at,
        "comment_count": comment_count,
        "reactions": {k: v for k, v in reactions.items() if v},
    }
