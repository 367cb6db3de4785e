"""Every bad input is a 4xx problem+json and changes nothing; never a 5xx."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from blog_testkit import Blog, assert_problem


async def _state(blog: Blog, headers: dict[str, str]) -> Any:
    mine = (await blog.client.get("/api/v1/posts/mine", headers=headers)).json()
    tags = (await blog.client.get("/api/v1/posts/tags")).json()
    return mine, tags


BAD_CREATES: list[tuple[Any, int]] = [
    ({"title": "t", "body": ""}, 422),  # empty body
    ({"title": "t", "body": "<script>alert(1)</script>"}, 422),  # empty once sanitised
    ({"title": "t", "body": "   "}, 422),
    ({"title": "", "body": "b"}, 422),
    ({"title": "   ", "body": "b"}, 422),
    ({"title": "x" * 201, "body": "b"}, 422),
    ({"title": "t", "body": "x" * 100_001}, 413),  # over max_body_chars
    ({"title": "t", "body": "b", "tags": ["not a tag!"]}, 422),
    ({"title": "t", "body": "b", "tags": ["t"] * 11}, 422),
    ({"title": "t", "body": "b", "category": "unknown"}, 422),
    ({"title": "t", "body": "b", "visibility": "everyone"}, 422),
    ({"title": "t", "body": "b", "format": "rtf"}, 422),
    ({"title": "t", "body": "b", "slug": "Bad Slug"}, 422),
    ({"title": "t", "body": "b", "media_ids": ["../etc/passwd"]}, 422),
    ({"title": "t", "body": "b", "scheduled_at": "2000-01-01T00:00:00Z"}, 422),
    ({"title": "t", "body": "b", "scheduled_at": "2999-01-01T00:00:00"}, 422),  # naive time
    ({"title": "t", "body": "b", "publish": True, "scheduled_at": "2999-01-01T00:00:00Z"}, 422),
    ({"title": "t", "body": "b", "unexpected": 1}, 422),
    ({"title": 5, "body": "b"}, 422),
    (["not", "an", "object"], 422),
    ({}, 422),
]


@pytest.mark.parametrize(("body", "status"), BAD_CREATES)
async def test_bad_post_bodies(blog: Blog, body: Any, status: int) -> None:
    alice = blog.person("alice")
    before = await _state(blog, alice.headers)
    assert_problem(await blog.client.post("/api/v1/posts", json=body, headers=alice.headers), status)
    assert await _state(blog, alice.headers) == before


async def test_huge_and_malformed_requests(blog: Blog) -> None:
    alice = blog.person("alice")
    before = await _state(blog, alice.headers)
    huge = b'{"title": "t", "body": "' + b"x" * 1_100_000 + b'"}'
    headers = {**alice.headers, "content-type": "application/json"}
    assert_problem(await blog.client.post("/api/v1/posts", content=huge, headers=headers), 413)

    async def chunks() -> Any:  # no Content-Length: the cap applies while streaming
        for _ in range(20):
            yield b"x" * 100_000

    assert_problem(await blog.client.post("/api/v1/posts", content=chunks(), headers=headers), 413)
    assert_problem(await blog.client.post("/api/v1/posts", content=b"{not json", headers=headers), 422)
    assert_problem(await blog.client.post("/api/v1/posts", content=b"", headers=headers), 422)
    assert await _state(blog, alice.headers) == before


async def test_bad_reads(blog: Blog) -> None:
    alice = blog.person("alice")
    await blog.post(alice, "p", tags=["known"])
    c = blog.client
    assert_problem(await c.get("/api/v1/posts/not-a-uuid"), 422)
    assert_problem(await c.get(f"/api/v1/posts/{uuid.uuid4()}"), 404)
    assert_problem(await c.get("/api/v1/posts/tags/unknown"), 404)  # unknown tag
    assert_problem(await c.get("/api/v1/posts/tags/NOT%20A%20TAG"), 422)
    assert_problem(await c.get("/api/v1/posts", params={"tag": "nope"}), 404)
    assert_problem(await c.get("/api/v1/posts/categories/nope"), 404)
    for cursor in ("garbage", "eyJhIjoxfQ", "W10", "WyJ4IiwieSJd", "x" * 5000):
        assert (await c.get("/api/v1/feed/public", params={"cursor": cursor})).status_code == 422
        assert (await c.get("/api/v1/feed/home", params={"cursor": cursor}, headers=alice.headers)).status_code == 422
        assert (await c.get("/api/v1/search", params={"q": "x", "cursor": cursor})).status_code == 422
        assert (await c.get("/api/v1/posts/tags", params={"cursor": cursor})).status_code == 422
    assert_problem(await c.get("/api/v1/feed/public", params={"limit": 0}), 422)
    assert_problem(await c.get("/api/v1/feed/public", params={"limit": 1000}), 422)
    assert_problem(await c.get("/api/v1/search"), 422)
    assert_problem(await c.get("/api/v1/search", params={"q": "   "}), 422)
    assert_problem(await c.get("/api/v1/search", params={"q": "x" * 201}), 422)
    assert_problem(await c.get("/api/v1/search", params={"q": "x", "since": "yesterday"}), 422)
    assert_problem(await c.get("/api/v1/search", params={"q": "x", "since": "2024-02-01", "until": "2024-01-01"}), 422)
    assert_problem(await c.get("/api/v1/feed/home"), 401)
    assert_problem(await c.get("/api/v1/feed/home", headers={"Authorization": "Bearer nope"}), 401)
    assert_problem(await c.get("/api/v1/posts", params={"tag": "a", "author": "b"}), 422)


async def test_search_survives_any_query_syntax(blog: Blog) -> None:
    alice = blog.person("alice")
    await blog.post(alice, "Quoted words", "some text")
    for q in ['"unbalanced', "a & | ! b", "(((", "-", "or or or", "\\", "'; DROP TABLE posts; --", "日本語", "the"]:
        resp = await blog.client.get("/api/v1/search", params={"q": q})
        assert resp.status_code == 200, (q, resp.text)


async def test_duplicate_and_missing_reactions_change_nothing(blog: Blog) -> None:
    alice, bob = blog.person("alice"), blog.person("bob")
    post = await blog.post(alice)
    url = f"/api/v1/posts/{post['id']}/reactions"
    assert (await blog.client.post(url, json={"kind": "like"}, headers=bob.headers)).status_code == 201
    assert assert_problem(await blog.client.post(url, json={"kind": "like"}, headers=bob.headers), 409)[
        "type"
    ].endswith("already-reacted")
    assert_problem(await blog.client.post(url, json={"kind": "poop"}, headers=bob.headers), 422)
    assert_problem(await blog.client.delete(f"{url}/love", headers=bob.headers), 404)
    assert_problem(await blog.client.delete(f"{url}/poop", headers=bob.headers), 422)
    assert_problem(
        await blog.client.post(f"/api/v1/posts/{uuid.uuid4()}/reactions", json={"kind": "like"}, headers=bob.headers),
        404,
    )
    got = (await blog.client.get(url, headers=bob.headers)).json()
    assert got["counts"] == {"like": 1} and got["mine"] == ["like"]


async def test_bad_state_transitions(blog: Blog) -> None:
    alice = blog.person("alice")
    mod = blog.person("mod", roles=("moderator",))
    post = await blog.post(alice)
    pid = post["id"]
    assert_problem(await blog.client.post(f"/api/v1/posts/{pid}/publish", headers=alice.headers), 409)
    assert_problem(
        await blog.client.post(
            f"/api/v1/posts/{pid}/schedule", json={"at": "2999-01-01T00:00:00Z"}, headers=alice.headers
        ),
        409,
    )
    assert_problem(await blog.client.post(f"/api/v1/posts/{pid}/restore", headers=mod.headers), 409)
    assert_problem(await blog.client.patch(f"/api/v1/posts/{pid}", json={}, headers=alice.headers), 422)
    assert_problem(await blog.client.patch(f"/api/v1/posts/{pid}", json={"title": None}, headers=alice.headers), 422)
    assert_problem(
        await blog.client.patch(f"/api/v1/posts/{pid}", json={"body": "x" * 100_001}, headers=alice.headers), 413
    )
    got = (await blog.client.get(f"/api/v1/posts/{pid}")).json()
    assert got["body_html"] == post["body_html"] and got["status"] == "published"
