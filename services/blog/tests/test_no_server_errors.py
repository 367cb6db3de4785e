"""Odd input anywhere (query, path, cursor, body) is a 4xx problem+json, never a 5xx; nothing changes.

Covers what PostgreSQL or Python cannot take as a value: NUL characters, lone surrogates, integers
past 64 bits, timestamps past year 9999 once moved to UTC, non-finite floats and deep JSON.
"""

from __future__ import annotations

import base64
import json
import uuid
from typing import Any

import pytest
from blog_testkit import Blog, assert_problem


def cursor(*parts: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(list(parts)).encode()).decode().rstrip("=")


def as_json(body: Any, headers: dict[str, str]) -> dict[str, Any]:
    """Request arguments sending `body` as ASCII JSON (lone surrogates escaped, as a client may send them)."""
    if body is None:
        return {"headers": headers}
    return {"content": json.dumps(body).encode(), "headers": {**headers, "content-type": "application/json"}}


def raw_cursor(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


HUGE = 10**30
U = str(uuid.uuid4())
BAD_CURSORS = [
    cursor(HUGE, U),
    cursor(-HUGE, U),
    cursor(2**63, U),
    cursor(-(2**63) - 1, U),
    cursor(9_999_999_999_999_999, U),
    cursor(1, "not-a-uuid"),
    cursor(True, U),
    cursor(None, U),
    cursor("1", U),
    cursor(1.5, U),
    raw_cursor(f'[NaN, "{U}"]'),
    raw_cursor(f'[Infinity, "{U}"]'),
    raw_cursor(f'[1e999, "{U}"]'),
    cursor(HUGE, "tag"),
    cursor(1, "a\u0000b"),
    cursor("a\u0000b"),
    cursor("\ud800"),
    raw_cursor("[" * 5000),
]


async def test_odd_cursors_on_every_list(blog: Blog) -> None:
    alice = blog.person("alice")
    mod = blog.person("mod", roles=("moderator",))
    post = await blog.post(alice, "Hello", tags=["known"])
    paths: list[tuple[str, dict[str, str], dict[str, str]]] = [
        ("/api/v1/posts", {}, {}),
        ("/api/v1/posts", {"tag": "known"}, {}),
        ("/api/v1/posts", {"author": "alice"}, alice.headers),
        ("/api/v1/posts/mine", {}, alice.headers),
        ("/api/v1/posts/tags", {}, {}),
        ("/api/v1/posts/categories", {}, {}),
        ("/api/v1/feed/public", {}, {}),
        ("/api/v1/feed/home", {}, alice.headers),
        ("/api/v1/feed/user/alice", {}, {}),
        ("/api/v1/search", {"q": "hello"}, {}),
        ("/api/v1/search", {"q": "hello"}, alice.headers),
        (f"/api/v1/posts/{post['id']}/comments", {}, {}),
        ("/api/v1/posts/moderation/queue", {}, mod.headers),
    ]
    for path, params, headers in paths:
        for c in BAD_CURSORS:
            resp = await blog.client.get(path, params={**params, "cursor": c}, headers=headers)
            assert resp.status_code < 500, (path, c, resp.status_code, resp.text)
            if resp.status_code != 200:
                assert_problem(resp, resp.status_code)


ODD_QUERIES: list[tuple[str, dict[str, str]]] = [
    ("/api/v1/posts", {"limit": str(HUGE)}),
    ("/api/v1/posts", {"limit": "-1"}),
    ("/api/v1/posts", {"limit": "1e3"}),
    ("/api/v1/posts", {"tag": "a\x00b"}),
    ("/api/v1/posts", {"author": "a\x00b"}),
    ("/api/v1/posts?author=%ED%A0%80", {}),  # not UTF-8
    ("/api/v1/posts", {"category": "a\x00b"}),
    ("/api/v1/posts/mine", {"status": "deleted"}),
    ("/api/v1/posts/tags", {"prefix": "a\x00"}),
    ("/api/v1/posts/tags", {"prefix": "%_\\"}),
    ("/api/v1/posts/by/a%00b", {}),
    ("/api/v1/posts/by/alice/a%00b", {}),
    ("/api/v1/feed/user/a%00b", {}),
    ("/api/v1/feed/tag/a%00b", {}),
    ("/api/v1/posts/tags/a%00b", {}),
    ("/api/v1/posts/categories/a%00b", {}),
    ("/api/v1/posts/00000000-0000-0000-0000-00000000000g", {}),
    ("/api/v1/posts/" + "1" * 5000, {}),
    ("/api/v1/comments/xyz", {}),
    ("/api/v1/search", {"q": "a\x00b"}),
    ("/api/v1/search?q=%ED%A0%80%FF", {}),
    ("/api/v1/search", {"q": "x", "author": "a\x00b"}),
    ("/api/v1/search", {"q": "x", "tag": "a\x00b"}),
    ("/api/v1/search", {"q": "x", "since": "0001-01-01T00:00:00-14:00"}),
    ("/api/v1/search", {"q": "x", "until": "9999-12-31T23:59:59-14:00"}),
    ("/api/v1/search", {"q": "x", "since": "9999-12-31T23:59:59+14:00"}),
    ("/api/v1/search", {"q": "x", "since": str(HUGE)}),
    ("/api/v1/search", {"q": "x", "since": "-1"}),
    ("/api/v1/search", {"q": "x", "since": "nan"}),
    ("/api/v1/search", {"q": ":*&|!<->'\"()\\"}),
    ("/api/v1/search", {"q": "<-> <2> <-1> <99999999999>"}),
]


@pytest.mark.parametrize(("path", "params"), ODD_QUERIES)
async def test_odd_query_and_path_values(blog: Blog, path: str, params: dict[str, str]) -> None:
    alice = blog.person("alice")
    await blog.post(alice, "Hello", tags=["known"])
    for headers in ({}, alice.headers):
        resp = await blog.client.get(path, params=params, headers=headers)
        assert resp.status_code < 500, (resp.status_code, resp.text)
        if resp.status_code != 200:
            assert_problem(resp, resp.status_code)


ODD_BODIES: list[dict[str, Any]] = [
    {"title": "t\u0000", "body": "b"},
    {"title": "t", "body": "b\u0000c"},
    {"title": "\ud800", "body": "b"},
    {"title": "t", "body": "b\ud800"},
    {"title": "t", "body": "b", "excerpt": "e\ud83d"},
    {"title": "t", "body": "b", "tags": ["a\u0000"]},
    {"title": "t", "body": "b", "category": "a\u0000b"},
    {"title": "t", "body": "b", "category": "\ud800"},
    {"title": "t", "body": "b", "media_ids": ["\ud800"]},
    {"title": "t", "body": "b", "scheduled_at": "9999-12-31T23:59:59-14:00"},
    {"title": "t", "body": "b", "scheduled_at": "0001-01-01T00:00:00+14:00"},
    {"title": "t", "body": "b", "scheduled_at": HUGE},
    {"title": "t", "body": "b", "publish": HUGE},
    {"title": "t", "body": "b", "visibility": None},
]


@pytest.mark.parametrize("body", ODD_BODIES)
async def test_odd_post_bodies(blog: Blog, body: dict[str, Any]) -> None:
    alice = blog.person("alice")
    resp = await blog.client.post("/api/v1/posts", **as_json(body, alice.headers))
    assert_problem(resp, 422)
    assert (await blog.client.get("/api/v1/posts/mine", headers=alice.headers)).json()["items"] == []


async def test_odd_bodies_on_other_writes(blog: Blog) -> None:
    alice, bob = blog.person("alice"), blog.person("bob")
    mod = blog.person("mod", roles=("moderator",))
    post = await blog.post(alice, "Hello")
    pid = post["id"]
    c = blog.client
    draft = (await c.post("/api/v1/posts", json={"title": "d", "body": "b"}, headers=alice.headers)).json()
    attempts: list[tuple[str, str, Any, dict[str, str]]] = [
        ("PATCH", f"/api/v1/posts/{pid}", {"category": "a\u0000"}, alice.headers),
        ("PATCH", f"/api/v1/posts/{pid}", {"title": "\ud800"}, alice.headers),
        ("PATCH", f"/api/v1/posts/{pid}", {"excerpt": "x\u0000"}, alice.headers),
        ("POST", f"/api/v1/posts/{draft['id']}/schedule", {"at": "9999-12-31T23:59:59-14:00"}, alice.headers),
        ("POST", f"/api/v1/posts/{pid}/report", {"reason": "\ud800"}, bob.headers),
        ("POST", f"/api/v1/posts/{pid}/report", {"reason": "\u0000"}, bob.headers),
        ("POST", f"/api/v1/posts/{pid}/comments", {"body": "x", "parent_id": HUGE}, bob.headers),
        ("POST", f"/api/v1/posts/{pid}/comments", {"body": "\ud800x"}, bob.headers),
        ("POST", f"/api/v1/posts/{pid}/reactions", {"kind": "\u0000"}, bob.headers),
        ("POST", f"/api/v1/posts/{pid}/hide", {"reason": "\ud800"}, mod.headers),
        ("POST", "/api/v1/posts/categories", {"slug": "ok", "name": "\ud800"}, mod.headers),
        ("POST", "/api/v1/posts/categories", {"slug": "ok", "name": "n", "description": "\u0000"}, mod.headers),
        ("DELETE", f"/api/v1/posts/{pid}/reactions/a%00b", None, bob.headers),
    ]
    for method, path, body, headers in attempts:
        resp = await c.request(method, path, **as_json(body, headers))
        assert resp.status_code < 500, (method, path, body, resp.status_code, resp.text)
    got = (await c.get(f"/api/v1/posts/{pid}")).json()
    assert got["title"] == "Hello" and got["comment_count"] == 0 and not got["hidden"]


async def test_deep_and_odd_json(blog: Blog) -> None:
    alice = blog.person("alice")
    headers = {**alice.headers, "content-type": "application/json"}
    for raw in (
        b"[" * 100_000,
        b'{"title": ' * 50_000,
        b'{"title": "t", "body": "b", "tags": [' + b"[" * 50_000,
        b"\xff\xfe",
        b'{"title": "\\ud800", "body": "b"}',
        b'{"title": "t", "body": "b", "publish": 1e999}',
    ):
        resp = await blog.client.post("/api/v1/posts", content=raw, headers=headers)
        assert resp.status_code < 500, (raw[:40], resp.status_code, resp.text)
        assert_problem(resp, resp.status_code)
    for length in ("-1", "abc", "1e3", " 5", str(HUGE)):
        resp = await blog.client.post("/api/v1/posts", content=b"{}", headers={**headers, "content-length": length})
        assert resp.status_code < 500, (length, resp.status_code, resp.text)


async def test_concurrent_duplicates_are_conflicts(blog: Blog) -> None:
    """Racing creates of the same category or the same explicit slug: one wins, the others get a 409."""
    import asyncio

    mod = blog.person("mod", roles=("moderator",))
    alice = blog.person("alice")
    cats = await asyncio.gather(
        *(
            blog.client.post("/api/v1/posts/categories", json={"slug": "race", "name": "R"}, headers=mod.headers)
            for _ in range(6)
        )
    )
    assert sorted(r.status_code for r in cats) == [201] + [409] * 5, [r.text for r in cats]
    posts = await asyncio.gather(
        *(
            blog.client.post("/api/v1/posts", json={"title": "t", "body": "b", "slug": "same"}, headers=alice.headers)
            for _ in range(6)
        )
    )
    assert sorted(r.status_code for r in posts) == [201] + [409] * 5, [r.text for r in posts]
    for r in [*cats, *posts]:
        if r.status_code == 409:
            assert_problem(r, 409)
