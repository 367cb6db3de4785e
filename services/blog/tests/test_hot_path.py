"""The home timeline's hot path: equal timestamps across a trimmed timeline, stale entries, the token cache."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime
from typing import Any

from blog_testkit import Blog, Person, assert_problem

from quark_sdk.auth import Principal, VerifiedTokenCache
from quark_sdk.testing import QuarkTestEnv, eventually


async def _capped_blog(quark: QuarkTestEnv) -> Blog:
    from quark_blog.app import module

    svc = await quark.start(module, timeline_cap=10, write_rate_limit=100_000)
    for runner in svc.ctx.consumers:
        await eventually(lambda r=runner: r.ready.is_set(), what="consumer subscribed")
    return Blog(quark, svc)


async def _all_pages(blog: Blog, who: Person, limit: int) -> list[str]:
    seen: list[str] = []
    cursor = None
    for _ in range(100):
        params: dict[str, Any] = {"limit": limit, **({"cursor": cursor} if cursor else {})}
        resp = await blog.client.get("/api/v1/feed/home", params=params, headers=who.headers)
        assert resp.status_code == 200, resp.text
        seen += [p["id"] for p in resp.json()["items"]]
        cursor = resp.json()["next_cursor"]
        if not cursor:
            return seen
    raise AssertionError("pagination does not end")


async def test_equal_timestamps_across_a_trimmed_timeline(quark: QuarkTestEnv) -> None:
    """14 posts published in the same microsecond, a timeline capped at 10: the trim splits the run of
    equal scores, and paging must still return each post exactly once, in (time, id) order."""
    blog = await _capped_blog(quark)
    alice, bob = blog.person("alice"), blog.person("bob")
    await blog.register(alice)
    await blog.register(bob)
    await blog.follow(bob, alice)
    assert await blog.home(bob) == []  # warm
    instant = datetime.now(UTC)
    blog.rt.clock = lambda: instant
    ids = [(await blog.post(alice, f"same {i}"))["id"] for i in range(14)]
    for pid in ids:
        await blog.fanned_out(pid)
    state = await blog.rt.timelines.read(bob.id, max_score=None, count=100)
    assert state is not None and len(state[1]) == 10 and state[0] > 0  # trimmed: the floor is that instant
    expected = sorted(ids, key=uuid.UUID, reverse=True)  # same time: id descending
    for limit in (1, 3, 7, 20):
        assert await _all_pages(blog, bob, limit) == expected, limit


async def test_a_long_run_of_stale_entries_still_reaches_older_posts(quark: QuarkTestEnv) -> None:
    """Entries the reader may no longer see (a suspended author) are filtered page by page; when they
    outlast the read budget the page continues from the database instead of ending early."""
    blog = await _capped_blog(quark)
    alice, carol, bob = blog.person("alice"), blog.person("carol"), blog.person("bob")
    for p in (alice, carol, bob):
        await blog.register(p)
    await blog.follow(bob, alice)
    await blog.follow(bob, carol)
    assert await blog.home(bob) == []
    old = (await blog.post(alice, "older"))["id"]
    spam = [(await blog.post(carol, f"spam {i}"))["id"] for i in range(9)]
    for pid in [old, *spam]:
        await blog.fanned_out(pid)
    await blog.apply(
        "quark.user.suspended",
        {"user_id": carol.id, "suspended": True, "reason": "spam", "actor_id": str(uuid.uuid4())},
    )
    assert await _all_pages(blog, bob, 2) == [old]


def _principal(exp: float) -> Principal:
    return Principal(subject="u1", kind="user", username="u", roles=frozenset({"user"}), claims={"exp": exp})


def test_token_cache_honours_expiry_and_size() -> None:
    cache = VerifiedTokenCache(size=2, ttl=60)
    cache.put("expired", _principal(time.time() - 1))
    assert cache.get("expired") is None
    cache.put("a", _principal(time.time() + 3600))
    cache.put("b", _principal(time.time() + 3600))
    assert cache.get("a") is not None
    cache.put("c", _principal(time.time() + 3600))  # evicts the least recently used ("b")
    assert cache.get("b") is None and cache.get("a") is not None and cache.get("c") is not None
    off = VerifiedTokenCache(ttl=0)
    off.put("x", _principal(time.time() + 3600))
    assert off.get("x") is None


async def test_cached_tokens_never_let_a_bad_token_through(blog: Blog) -> None:
    alice = blog.person("alice")
    await blog.register(alice)
    assert await blog.home(alice) == []
    assert await blog.home(alice) == []  # served with the cached verification
    token = alice.headers["Authorization"].split()[1]
    tampered = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    for headers in (
        {"Authorization": f"Bearer {tampered}"},
        {"Authorization": f"Basic {token}"},
        {"Authorization": "Bearer"},
        {},
    ):
        assert_problem(await blog.client.get("/api/v1/feed/home", headers=headers), 401)
    service = blog.quark.bearer(blog.quark.service_token("hub", ()))
    assert_problem(await blog.client.get("/api/v1/feed/home", headers=service), 403)


async def test_home_items_have_the_same_shape_as_other_lists(blog: Blog) -> None:
    """Home pages are written from JSON built by PostgreSQL; each item must equal the PostSummary that
    every other list returns (zero reaction counts left out, times equal as instants)."""
    alice, bob = blog.person("alice"), blog.person("bob")
    await blog.register(alice)
    await blog.register(bob)
    await blog.follow(bob, alice)
    mod = blog.person("mod", roles=("moderator",))
    made = await blog.client.post(
        "/api/v1/posts/categories", json={"slug": "news", "name": "News"}, headers=mod.headers
    )
    assert made.status_code == 201, made.text
    post = await blog.post(
        alice, 'Shape «ünïcode» "quotes"', "Body", tags=["one", "two"], category="news", media_ids=["m1"]
    )
    url = f"/api/v1/posts/{post['id']}"
    assert (await blog.client.post(f"{url}/reactions", json={"kind": "like"}, headers=bob.headers)).status_code == 201
    assert (await blog.client.post(f"{url}/reactions", json={"kind": "love"}, headers=bob.headers)).status_code == 201
    assert (await blog.client.delete(f"{url}/reactions/love", headers=bob.headers)).status_code == 200
    assert (await blog.client.post(f"{url}/comments", json={"body": "hi"}, headers=bob.headers)).status_code == 201
    await blog.fanned_out(post["id"])
    home = (await blog.client.get("/api/v1/feed/home", headers=bob.headers)).json()["items"]
    public = (await blog.client.get("/api/v1/feed/public")).json()["items"]
    assert len(home) == 1 and len(public) == 1
    h, p = home[0], public[0]
    assert datetime.fromisoformat(h.pop("published_at")) == datetime.fromisoformat(p.pop("published_at"))
    assert h == p
    assert h["reactions"] == {"like": 1} and h["comment_count"] == 1 and h["tags"] == ["one", "two"]


async def test_home_parameters_are_validated_and_documented(blog: Blog) -> None:
    """The home route reads `limit` and `cursor` by hand (no FastAPI parameter machinery): the same
    rules as every other list, 422 problem+json, and the same OpenAPI declaration."""
    alice = blog.person("alice")
    await blog.register(alice)
    for bad in ("0", "101", "-1", "abc", "1e3", "", " 5", "5.0", "٣", "9" * 30):
        assert_problem(await blog.client.get("/api/v1/feed/home", params={"limit": bad}, headers=alice.headers), 422)
    assert_problem(
        await blog.client.get("/api/v1/feed/home", params={"cursor": "x" * 4001}, headers=alice.headers), 422
    )
    assert_problem(await blog.client.get("/api/v1/feed/home", params={"limit": "abc"}), 401)  # auth comes first
    for ok in ("1", "100", "020"):
        resp = await blog.client.get("/api/v1/feed/home", params={"limit": ok}, headers=alice.headers)
        assert resp.status_code == 200, resp.text
    spec = (await blog.client.get("/openapi.json")).json()
    params = {p["name"]: p for p in spec["paths"]["/api/v1/feed/home"]["get"]["parameters"]}
    assert params["limit"]["schema"]["maximum"] == 100 and params["cursor"]["schema"]["maxLength"] == 4000


async def test_summary_keys_name_the_summary_columns_in_order(blog: Blog) -> None:
    """The home timeline reads SUMMARY_COLUMNS by position (summary_from_values)."""
    from quark_blog.common import SUMMARY_COLUMNS, SUMMARY_FROM, SUMMARY_KEYS, summary_from_row, summary_from_values

    alice = blog.person("alice")
    await blog.register(alice)
    post = await blog.post(alice, "Positional")
    pool = await blog.rt.read_pool()
    row = await pool.fetchrow(f"SELECT {SUMMARY_COLUMNS} {SUMMARY_FROM} WHERE p.id = $1::uuid", post["id"])
    assert row is not None and tuple(row.keys()) == SUMMARY_KEYS
    assert summary_from_values(row) == summary_from_row(row)
    assert str(summary_from_values(row)["id"]) == post["id"]


async def test_stale_entries_inside_a_page_are_skipped_without_gaps(blog: Blog) -> None:
    """A page hydrates only the entries it still needs; when some of those turn out stale (here: hidden
    behind the timeline's back), it reads on from the position reached — no gaps, no repeats."""
    from sqlalchemy import text

    alice, bob = blog.person("alice"), blog.person("bob")
    await blog.register(alice)
    await blog.register(bob)
    await blog.follow(bob, alice)
    assert await blog.home(bob) == []
    ids = [(await blog.post(alice, f"post {i}"))["id"] for i in range(9)]
    for pid in ids:
        await blog.fanned_out(pid)
    newest_first = ids[::-1]
    stale = {newest_first[1], newest_first[2], newest_first[5]}
    async with blog.svc.ctx.database().session() as session, session.begin():
        # Straight in the database: the Redis timeline still lists them.
        await session.execute(text("UPDATE posts SET hidden = true WHERE id = ANY(CAST(:ids AS uuid[]))"),
                              {"ids": sorted(stale)})
    visible = [p for p in newest_first if p not in stale]
    for limit in (1, 2, 3, 4, 20):
        assert await _all_pages(blog, bob, limit) == visible, limit


async def test_home_bytes_validate_against_the_declared_response_model(blog: Blog) -> None:
    """The home route writes its JSON by hand; the bytes must be exactly what its declared response_model
    (PostPage) describes: valid in strict mode, with no key the model does not name, cursor included."""
    from quark_blog.api import feed
    from quark_blog.schemas import PostPage

    (route,) = [r for r in feed.routes if getattr(r, "path", None) == "/api/v1/feed/home"]
    assert getattr(route, "response_model", None) is PostPage
    alice, bob = blog.person("alice"), blog.person("bob")
    await blog.register(alice)
    await blog.register(bob)
    await blog.follow(bob, alice)
    posts = [await blog.post(alice, f"Post {i}", tags=["t"], media_ids=["m1"]) for i in range(3)]
    await blog.fanned_out(posts[-1]["id"])
    resp = await blog.client.get("/api/v1/feed/home", params={"limit": 2}, headers=bob.headers)
    assert resp.status_code == 200 and resp.headers["content-type"] == "application/json"
    page = PostPage.model_validate_json(resp.content, strict=True)
    assert len(page.items) == 2 and page.next_cursor
    raw = resp.json()
    assert set(raw) == set(PostPage.model_fields)
    item_fields = set(PostPage.model_fields["items"].annotation.__args__[0].model_fields)  # type: ignore[union-attr]
    assert all(set(item) == item_fields for item in raw["items"])
    nxt = await blog.client.get("/api/v1/feed/home", params={"cursor": page.next_cursor}, headers=bob.headers)
    last = PostPage.model_validate_json(nxt.content, strict=True)
    assert [str(i.id) for i in [*page.items, *last.items]] == [p["id"] for p in reversed(posts)]
