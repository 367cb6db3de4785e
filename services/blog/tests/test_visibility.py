"""The visibility rule's SQL and Python agree (quark_blog.visibility), case by case, on real PostgreSQL.

Every combination of post visibility x the viewer's relation to the author (self, follower,
stranger, anonymous, blocked by the author, blocking the author) x author privacy x hidden x
deleted x suspended (and, for the owner rule, a draft) becomes one post with its own viewer in the
database; one query evaluates each SQL fragment per case, and each answer must equal the Python
predicate's.
"""

from __future__ import annotations

import itertools
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from blog_testkit import Blog
from sqlalchemy import text

from quark_blog import visibility as v

RELATIONS = ("self", "follower", "stranger", "anonymous", "blocked_by_author", "blocking_author")


@dataclass(frozen=True)
class Case:
    post: v.PostFacts
    relation: str
    viewer: str | None
    author: str
    post_id: uuid.UUID

    @property
    def rel(self) -> v.Relation | None:
        if self.relation == "anonymous":
            return None
        return v.Relation(
            is_self=self.relation == "self",
            follows=self.relation == "follower",
            blocked=self.relation in ("blocked_by_author", "blocking_author"),
        )


def _cases() -> list[Case]:
    out = []
    for vis, rel, privacy, hidden, deleted, suspended, status in itertools.product(
        ("public", "followers", "private"),
        RELATIONS,
        ("public", "followers"),
        (False, True),
        (False, True),
        (False, True),
        ("published", "draft"),
    ):
        author = str(uuid.uuid4())
        viewer = None if rel == "anonymous" else author if rel == "self" else str(uuid.uuid4())
        facts = v.PostFacts(vis, status, deleted, hidden, privacy, suspended)
        out.append(Case(facts, rel, viewer, author, uuid.uuid4()))
    return out


async def test_sql_and_python_agree_for_every_case(blog: Blog) -> None:
    cases = _cases()
    assert len(cases) == 3 * 6 * 2 * 2 * 2 * 2 * 2
    now = datetime.now(UTC)
    async with blog.svc.ctx.database().transaction() as session:
        await session.execute(text("CREATE TEMP TABLE cases (post_id uuid, viewer varchar(64)) ON COMMIT DROP"))
        for i, c in enumerate(cases):
            p = c.post
            await session.execute(
                text(
                    "INSERT INTO authors (user_id, username, privacy, suspended) VALUES (:a, :n, :priv, :s) "
                    "ON CONFLICT DO NOTHING"
                ),
                {"a": c.author, "n": f"u{i}", "priv": p.author_privacy, "s": p.author_suspended},
            )
            await session.execute(
                text(
                    "INSERT INTO posts (id, author_id, slug, title, body_format, body_source, body_html, body_text, "
                    "excerpt, visibility, status, published_at, created_at, updated_at, deleted_at, hidden) "
                    "VALUES (:id, :a, :slug, 't', 'markdown', 'b', 'b', 'b', 'b', :vis, :st, :pub, :now, :now, "
                    ":del, :hid)"
                ),
                {
                    "id": c.post_id, "a": c.author, "slug": f"s{i}", "vis": p.visibility, "st": p.status,
                    "pub": now if p.status == "published" else None, "now": now,
                    "del": now if p.deleted else None, "hid": p.hidden,
                },
            )
            if c.viewer and c.viewer != c.author:
                await session.execute(
                    text("INSERT INTO authors (user_id, username) VALUES (:u, :n)"), {"u": c.viewer, "n": f"v{i}"}
                )
            if c.relation == "follower":
                await session.execute(
                    text("INSERT INTO follows (follower_id, followee_id) VALUES (:v, :a)"),
                    {"v": c.viewer, "a": c.author},
                )
            elif c.relation in ("blocked_by_author", "blocking_author"):
                pair = (c.author, c.viewer) if c.relation == "blocked_by_author" else (c.viewer, c.author)
                await session.execute(
                    text("INSERT INTO blocks (blocker_id, blocked_id) VALUES (:x, :y)"), {"x": pair[0], "y": pair[1]}
                )
            await session.execute(text("INSERT INTO cases VALUES (:p, :v)"), {"p": c.post_id, "v": c.viewer})
        viewer = "t.viewer"
        anonymous = "t.viewer IS NULL"
        rows = (
            await session.execute(
                text(
                    f"""SELECT t.post_id,
                        ({v.listed_sql()}) AS listed,
                        CASE WHEN {anonymous} THEN ({v.listed_sql()} AND {v.can_see_sql(None)})
                             ELSE ({v.listed_sql()} AND {v.can_see_sql(viewer)}) END AS can_see,
                        CASE WHEN {anonymous} THEN NULL ELSE ({v.in_home_sql(viewer)}) END AS in_home,
                        CASE WHEN {anonymous} THEN ({v.in_public_timeline_sql(None)})
                             ELSE ({v.in_public_timeline_sql(viewer)}) END AS in_public
                    FROM cases t JOIN posts p ON p.id = t.post_id JOIN authors a ON a.user_id = p.author_id"""  # noqa: S608
                )
            )
        ).all()
        await session.rollback()
    by_id = {r.post_id: r for r in rows}
    assert len(by_id) == len(cases)
    mismatches = []
    for c in cases:
        r = by_id[c.post_id]
        want = {
            "listed": v.listed(c.post),
            "can_see": v.can_see(c.post, c.rel),
            "in_home": None if c.rel is None else v.in_home(c.post, c.rel),
            "in_public": v.in_public_timeline(c.post, c.rel),
        }
        got = {"listed": r.listed, "can_see": r.can_see, "in_home": r.in_home, "in_public": r.in_public}
        if want != got:
            mismatches.append((c.post, c.relation, want, got))
    assert not mismatches, mismatches[:5]
    # The rule is not vacuous: each outcome occurs.
    seen = {(v.can_see(c.post, c.rel), c.relation) for c in cases}
    assert {(True, r) for r in RELATIONS if r not in ("blocked_by_author", "blocking_author")} <= seen
    assert (False, "blocked_by_author") in seen and (True, "blocked_by_author") not in seen


def test_python_rule_reads_as_documented() -> None:
    """A few cases written out, so that a wrong Python rule cannot agree with a wrong SQL rule unnoticed."""
    public = v.PostFacts("public")
    followers_only = v.PostFacts("followers")
    private = v.PostFacts("private")
    locked_profile = v.PostFacts("public", author_privacy="followers")
    stranger, follower, me = v.Relation(), v.Relation(follows=True), v.Relation(is_self=True)
    assert v.can_see(public, None) and v.can_see(public, stranger)
    assert not v.can_see(followers_only, stranger) and v.can_see(followers_only, follower)
    assert not v.can_see(private, follower) and v.can_see(private, me)
    assert not v.can_see(locked_profile, None) and v.can_see(locked_profile, follower)
    assert not v.can_see(public, v.Relation(follows=True, blocked=True))
    assert not v.can_see(v.PostFacts("public", hidden=True), me)
    assert not v.can_see(v.PostFacts("public", author_suspended=True), None)
    assert not v.in_home(public, stranger) and v.in_home(followers_only, follower)
    assert v.counted_publicly("published", False, False, "public")
    assert not v.counted_publicly("published", False, False, "followers")
