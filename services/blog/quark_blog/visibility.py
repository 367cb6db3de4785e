"""Who may see a post: the one statement of the rule, as SQL fragments and as Python predicates.

Every read of the blog (listings, home timeline, search, one post, the tag counters, the
timeline fan-out) builds its filter from here, and tests/test_visibility.py checks that the SQL
and the Python agree for every combination of post visibility, viewer relation, author privacy,
hidden, deleted and suspended against real PostgreSQL.

The rule:

* *listed*: the post is published, not deleted and not hidden, and its author is neither
  suspended nor deleted. An unlisted post is seen by nobody through a listing (its author still
  opens it by id: ownership, not visibility; moderators see hidden and reported posts in the
  moderation views: see `reading.under_moderation`).
* a listed post is seen by its author; by anyone (even anonymous) when the post is `public` and
  the author's profile is `public`; and by a follower of the author when the post is not
  `private` — never across a block, in either direction.

SQL fragments are over `posts p JOIN authors a ON a.user_id = p.author_id` (aliases can be
changed) and take the viewer as an SQL expression (`:viewer` by default, `$2::varchar` for the
raw asyncpg hot path, a column in the test).
"""

from __future__ import annotations

from dataclasses import dataclass

PUBLIC = "public"
PRIVATE = "private"

# --------------------------------------------------------------------------- Python


@dataclass(frozen=True)
class PostFacts:
    """What the rule reads of a post and its author."""

    visibility: str  # public | followers | private
    status: str = "published"  # draft | scheduled | published
    deleted: bool = False
    hidden: bool = False
    author_privacy: str = PUBLIC  # public | followers
    author_suspended: bool = False
    author_deleted: bool = False


@dataclass(frozen=True)
class Relation:
    """How a signed-in viewer stands to the author (anonymous viewers have no relation: None)."""

    is_self: bool = False
    follows: bool = False  # the viewer follows the author
    blocked: bool = False  # a block between them, either way


def post_listed(status: str, deleted: bool, hidden: bool) -> bool:
    """The post itself is up (published, not deleted, not hidden), whatever its author's state."""
    return status == "published" and not deleted and not hidden


def listed(post: PostFacts) -> bool:
    return (
        post_listed(post.status, post.deleted, post.hidden) and not post.author_suspended and not post.author_deleted
    )


def reaches_followers(visibility: str) -> bool:
    """A post of this visibility is shown to the author's followers (private: to the author alone)."""
    return visibility != PRIVATE


def open_to_all(post: PostFacts) -> bool:
    """Anyone, even anonymous, may see it (the public timeline, tag and category counts)."""
    return post.visibility == PUBLIC and post.author_privacy == PUBLIC


def counted_publicly(status: str, deleted: bool, hidden: bool, visibility: str) -> bool:
    """The post counts in the tag and category counters (author state is applied at read time)."""
    return post_listed(status, deleted, hidden) and visibility == PUBLIC


def can_see(post: PostFacts, rel: Relation | None) -> bool:
    """The viewer (None: anonymous) may see this post."""
    if not listed(post):
        return False
    if rel is None:
        return open_to_all(post)
    if rel.is_self:
        return True
    if rel.blocked:
        return False
    return open_to_all(post) or (reaches_followers(post.visibility) and rel.follows)


def in_home(post: PostFacts, rel: Relation) -> bool:
    """The post belongs on the viewer's home timeline: their own, or a followed author's they may see."""
    return (rel.is_self or rel.follows) and can_see(post, rel)


def in_public_timeline(post: PostFacts, rel: Relation | None) -> bool:
    """The public timeline: posts open to all, minus those across a block (even the viewer's own must be open)."""
    return listed(post) and open_to_all(post) and not (rel is not None and rel.blocked)


# --------------------------------------------------------------------------- SQL


def post_listed_sql(p: str = "p") -> str:
    return f"{p}.status = 'published' AND {p}.deleted_at IS NULL AND NOT {p}.hidden"


def listed_sql(p: str = "p", a: str = "a") -> str:
    return f"{post_listed_sql(p)} AND NOT {a}.suspended AND NOT {a}.deleted"


def reaches_followers_sql(p: str = "p") -> str:
    return f"{p}.visibility <> 'private'"


def open_to_all_sql(p: str = "p", a: str = "a") -> str:
    return f"({p}.visibility = 'public' AND {a}.privacy = 'public')"


def not_blocked_sql(viewer: str = ":viewer", p: str = "p") -> str:
    # Two probes, one per direction, each a primary-key lookup (an OR inside one subquery may scan).
    return (
        f"NOT EXISTS (SELECT 1 FROM blocks b WHERE b.blocker_id = {viewer} AND b.blocked_id = {p}.author_id)\n"  # noqa: S608
        f"    AND NOT EXISTS (SELECT 1 FROM blocks b WHERE b.blocker_id = {p}.author_id AND b.blocked_id = {viewer})"
    )


def follows_sql(viewer: str = ":viewer", p: str = "p") -> str:
    return f"EXISTS (SELECT 1 FROM follows f WHERE f.follower_id = {viewer} AND f.followee_id = {p}.author_id)"  # noqa: S608 - fixed aliases


def can_see_sql(viewer: str | None = ":viewer", p: str = "p", a: str = "a") -> str:
    """SQL of `can_see` *given* `listed` (listings put `listed_sql` first); viewer None: anonymous."""
    if viewer is None:
        return open_to_all_sql(p, a)
    return (
        f"({p}.author_id = {viewer} OR ({not_blocked_sql(viewer, p)} AND (\n"
        f"        {open_to_all_sql(p, a)}\n"
        f"        OR ({reaches_followers_sql(p)} AND {follows_sql(viewer, p)}))))"
    )


def in_home_sql(viewer: str = ":viewer", p: str = "p", a: str = "a") -> str:
    """SQL of `in_home`, listing rule included: the hot path's form (the follow probe before the block probes)."""
    return (
        f"{listed_sql(p, a)} AND ({p}.author_id = {viewer} OR ({reaches_followers_sql(p)}\n"
        f"    AND {follows_sql(viewer, p)} AND {not_blocked_sql(viewer, p)}))"
    )


def in_public_timeline_sql(viewer: str | None = ":viewer", p: str = "p", a: str = "a") -> str:
    """SQL of `in_public_timeline`, listing rule included."""
    sql = f"{listed_sql(p, a)} AND {open_to_all_sql(p, a)}"
    return sql if viewer is None else f"{sql} AND {not_blocked_sql(viewer, p)}"
