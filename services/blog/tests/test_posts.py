"""Posts: lifecycle, slugs, personal blog URLs, visibility, tags and categories, authorization on every write."""

from __future__ import annotations

import uuid
from typing import Any

from blog_testkit import Blog, assert_problem


async def test_draft_edit_publish_unpublish_delete(blog: Blog) -> None:
    alice = blog.person("alice")
    c = blog.client
    draft = (
        await c.post(
            "/api/v1/posts",
            json={"title": "My Draft", "body": "first version", "tags": ["Python"]},
            headers=alice.headers,
        )
    ).json()
    assert draft["status"] == "draft" and draft["published_at"] is None and draft["slug"] == "my-draft"
    assert draft["tags"] == ["python"] and draft["body_source"] == "first version"
    # Drafts are invisible to others and to lists.
    assert (await c.get(f"/api/v1/posts/{draft['id']}")).status_code == 404
    assert (await c.get("/api/v1/feed/public")).json()["items"] == []

    edited = await c.patch(
        f"/api/v1/posts/{draft['id']}", json={"body": "second *version*", "excerpt": "Short."}, headers=alice.headers
    )
    assert edited.status_code == 200, edited.text
    assert edited.json()["excerpt"] == "Short." and "<em>version</em>" in edited.json()["body_html"]

    published = await c.post(f"/api/v1/posts/{draft['id']}/publish", headers=alice.headers)
    assert published.status_code == 200 and published.json()["status"] == "published"
    assert [p["id"] for p in (await c.get("/api/v1/feed/public")).json()["items"]] == [draft["id"]]
    anon = (await c.get(f"/api/v1/posts/{draft['id']}")).json()
    assert anon["body_source"] is None and anon["body_html"] == "<p>second <em>version</em></p>"

    assert (await c.post(f"/api/v1/posts/{draft['id']}/unpublish", headers=alice.headers)).json()["status"] == "draft"
    assert (await c.get("/api/v1/feed/public")).json()["items"] == []

    assert (await c.delete(f"/api/v1/posts/{draft['id']}", headers=alice.headers)).status_code == 204
    assert_problem(await c.get(f"/api/v1/posts/{draft['id']}", headers=alice.headers), 404)
    # The slug is free again once the post is deleted.
    again = await c.post("/api/v1/posts", json={"title": "x", "body": "y", "slug": "my-draft"}, headers=alice.headers)
    assert again.status_code == 201


async def test_slugs_unique_per_author(blog: Blog) -> None:
    alice, bob = blog.person("alice"), blog.person("bob")
    a1 = await blog.post(alice, "Same Title")
    a2 = await blog.post(alice, "Same Title")
    b1 = await blog.post(bob, "Same Title")
    assert (a1["slug"], a2["slug"], b1["slug"]) == ("same-title", "same-title-2", "same-title")
    dup = await blog.client.post(
        "/api/v1/posts", json={"title": "t", "body": "b", "slug": "same-title"}, headers=alice.headers
    )
    assert assert_problem(dup, 409)["type"].endswith("duplicate-slug")
    rename = await blog.client.patch(f"/api/v1/posts/{a2['id']}", json={"slug": "same-title"}, headers=alice.headers)
    assert_problem(rename, 409)
    # Personal blog URLs.
    page = (await blog.client.get("/api/v1/posts/by/ALICE")).json()
    assert [p["id"] for p in page["items"]] == [a2["id"], a1["id"]]
    one = await blog.client.get("/api/v1/posts/by/alice/same-title-2")
    assert one.status_code == 200 and one.json()["id"] == a2["id"]
    assert assert_problem(await blog.client.get("/api/v1/posts/by/alice/nope"), 404)["detail"] == "post not found"
    assert assert_problem(await blog.client.get("/api/v1/posts/by/nobody/same-title"), 404)["detail"] == (
        "no such author"
    )
    assert_problem(await blog.client.get("/api/v1/posts/by/nobody"), 404)
    # A draft by its slug: its author reads it, nobody else learns it exists.
    made = await blog.client.post("/api/v1/posts", json={"title": "Draft", "body": "d"}, headers=alice.headers)
    draft = made.json()
    mine = await blog.client.get(f"/api/v1/posts/by/alice/{draft['slug']}", headers=alice.headers)
    assert mine.status_code == 200 and mine.json()["status"] == "draft"
    assert_problem(await blog.client.get(f"/api/v1/posts/by/alice/{draft['slug']}", headers=bob.headers), 404)


async def test_only_the_author_writes(blog: Blog) -> None:
    alice, mallory = blog.person("alice"), blog.person("mallory")
    mod = blog.person("mod", roles=("moderator",))
    post = await blog.post(alice, "Mine", "original")
    draft = (await blog.client.post("/api/v1/posts", json={"title": "d", "body": "d"}, headers=alice.headers)).json()
    pid = post["id"]
    attempts: list[tuple[str, str, dict[str, Any] | None]] = [
        ("PATCH", f"/api/v1/posts/{pid}", {"title": "hacked"}),
        ("DELETE", f"/api/v1/posts/{pid}", None),
        ("POST", f"/api/v1/posts/{pid}/unpublish", None),
        ("POST", f"/api/v1/posts/{pid}/schedule", {"at": "2999-01-01T00:00:00Z"}),
    ]
    for method, url, body in attempts:
        for who in (mallory, mod):
            assert_problem(await blog.client.request(method, url, json=body, headers=who.headers), 403)
        assert_problem(await blog.client.request(method, url, json=body), 401)
    # Someone else's draft does not even exist for them.
    assert_problem(await blog.client.post(f"/api/v1/posts/{draft['id']}/publish", headers=mallory.headers), 404)
    # Moderation needs the role.
    for url in (f"/api/v1/posts/{pid}/hide", f"/api/v1/posts/{pid}/restore"):
        assert_problem(await blog.client.post(url, headers=alice.headers), 403)
        assert_problem(await blog.client.post(url), 401)
    assert_problem(
        await blog.client.post("/api/v1/posts/categories", json={"slug": "x", "name": "X"}, headers=alice.headers), 403
    )
    assert_problem(await blog.client.post("/api/v1/posts", json={"title": "t", "body": "b"}), 401)
    service = blog.quark.bearer(blog.quark.service_token("ai", ("blog:read",)))
    assert_problem(await blog.client.post("/api/v1/posts", json={"title": "t", "body": "b"}, headers=service), 403)
    # Nothing changed.
    got = (await blog.client.get(f"/api/v1/posts/{pid}")).json()
    assert got["title"] == "Mine" and got["status"] == "published" and not got["hidden"]


async def test_visibility_followers_and_private(blog: Blog) -> None:
    alice, bob, carol = blog.person("alice"), blog.person("bob"), blog.person("carol")
    for p in (alice, bob, carol):
        await blog.register(p)
    await blog.follow(bob, alice)
    public = await blog.post(alice, "Public")
    friends = await blog.post(alice, "Friends", visibility="followers")
    secret = await blog.post(alice, "Secret", visibility="private")

    async def blog_ids(who: Any) -> list[str]:
        headers = who.headers if who else {}
        return [p["id"] for p in (await blog.client.get("/api/v1/posts/by/alice", headers=headers)).json()["items"]]

    assert await blog_ids(None) == [public["id"]]
    assert await blog_ids(carol) == [public["id"]]
    assert await blog_ids(bob) == [friends["id"], public["id"]]
    assert await blog_ids(alice) == [secret["id"], friends["id"], public["id"]]
    assert (await blog.client.get(f"/api/v1/posts/{friends['id']}", headers=bob.headers)).status_code == 200
    assert_problem(await blog.client.get(f"/api/v1/posts/{friends['id']}", headers=carol.headers), 404)
    by_slug = f"/api/v1/posts/by/alice/{friends['slug']}"
    assert (await blog.client.get(by_slug, headers=bob.headers)).json()["id"] == friends["id"]
    assert_problem(await blog.client.get(by_slug, headers=carol.headers), 404)
    assert_problem(await blog.client.get(by_slug), 404)
    assert_problem(await blog.client.get(f"/api/v1/posts/{secret['id']}", headers=bob.headers), 404)
    # A followers-only profile makes even public posts followers-only.
    await blog.apply(
        "quark.user.profile_updated",
        {
            "user_id": alice.id,
            "username": "alice",
            "display_name": "A",
            "bio": "",
            "avatar": None,
            "privacy": "followers",
        },
    )
    assert await blog_ids(carol) == []
    assert await blog_ids(bob) == [friends["id"], public["id"]]


async def test_tags_categories_and_counts(blog: Blog) -> None:
    alice = blog.person("alice")
    mod = blog.person("mod", roles=("moderator",))
    cat = await blog.client.post("/api/v1/posts/categories", json={"slug": "tech", "name": "Tech"}, headers=mod.headers)
    assert cat.status_code == 201
    assert_problem(
        await blog.client.post("/api/v1/posts/categories", json={"slug": "tech", "name": "T"}, headers=mod.headers), 409
    )
    p1 = await blog.post(alice, "One", tags=["python", "db"], category="tech")
    p2 = await blog.post(alice, "Two", tags=["python"])
    await blog.post(alice, "Three", tags=["python"], visibility="private")
    await blog.client.post(
        "/api/v1/posts", json={"title": "Draft", "body": "x", "tags": ["python"]}, headers=alice.headers
    )
    tags = (await blog.client.get("/api/v1/posts/tags")).json()["items"]
    assert tags == [{"name": "python", "post_count": 2}, {"name": "db", "post_count": 1}]
    by_tag = (await blog.client.get("/api/v1/posts/tags/Python")).json()["items"]
    assert [p["id"] for p in by_tag] == [p2["id"], p1["id"]]
    assert [p["id"] for p in (await blog.client.get("/api/v1/posts", params={"tag": "db"})).json()["items"]] == [
        p1["id"]
    ]
    cats = (await blog.client.get("/api/v1/posts/categories")).json()["items"]
    assert cats == [{"slug": "tech", "name": "Tech", "description": "", "post_count": 1}]
    assert [p["id"] for p in (await blog.client.get("/api/v1/posts/categories/tech")).json()["items"]] == [p1["id"]]
    # Counts follow edits, hiding and deletion.
    await blog.client.patch(f"/api/v1/posts/{p1['id']}", json={"tags": ["db"], "category": None}, headers=alice.headers)
    await blog.client.post(f"/api/v1/posts/{p2['id']}/hide", headers=mod.headers)
    tags = {t["name"]: t["post_count"] for t in (await blog.client.get("/api/v1/posts/tags")).json()["items"]}
    assert tags == {"python": 0, "db": 1}
    await blog.client.delete(f"/api/v1/posts/{p1['id']}", headers=alice.headers)
    tags = {t["name"]: t["post_count"] for t in (await blog.client.get("/api/v1/posts/tags")).json()["items"]}
    assert tags == {"python": 0, "db": 0}
    assert (await blog.client.get("/api/v1/posts/categories")).json()["items"][0]["post_count"] == 0


async def test_cursor_pagination_walks_every_post_once(blog: Blog) -> None:
    alice = blog.person("alice")
    ids = [(await blog.post(alice, f"Post {i}"))["id"] for i in range(7)]
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        page = (await blog.client.get("/api/v1/feed/public", params=params)).json()
        seen += [p["id"] for p in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == list(reversed(ids))


async def test_media_detached_when_deleted(blog: Blog) -> None:
    alice = blog.person("alice")
    post = await blog.post(alice, "Pics", media_ids=["m1", "m2"])
    await blog.apply("quark.media.deleted", {"media_id": "m1", "owner_id": alice.id})
    assert (await blog.client.get(f"/api/v1/posts/{post['id']}")).json()["media_ids"] == ["m2"]


async def test_write_rate_limit(quark: Any) -> None:
    from quark_blog.app import module

    svc = await quark.start(module, write_rate_limit=3)
    headers = quark.bearer(quark.user_token(str(uuid.uuid4()), username="u1"))  # subjects are uuids (UserId)
    codes = [
        (await svc.client.post("/api/v1/posts", json={"title": "t", "body": "b"}, headers=headers)).status_code
        for _ in range(4)
    ]
    assert codes == [201, 201, 201, 429]
    mine = (await svc.client.get("/api/v1/posts/mine", headers=headers)).json()["items"]
    assert len(mine) == 3


async def test_preview_renders_with_the_posts_sanitiser_and_stores_nothing(blog: Blog) -> None:
    """POST /api/v1/posts/preview: the editor's live preview is the saved post's own rendering, nothing kept."""
    alice = blog.person("alice")
    c = blog.client
    body = "# Hi\n\n**bold** <script>alert(1)</script> [x](javascript:alert(1)) <img src=x onerror=alert(1)>"
    resp = await c.post("/api/v1/posts/preview", json={"body": body}, headers=alice.headers)
    assert resp.status_code == 200, resp.text
    html = resp.json()["body_html"]
    assert "<h1>Hi</h1>" in html and "<strong>bold</strong>" in html
    assert "<script" not in html and "href=\"javascript" not in html and "onerror" not in html
    empty = await c.post("/api/v1/posts/preview", json={"body": "  "}, headers=alice.headers)
    assert empty.json() == {"body_html": ""}
    assert_problem(await c.post("/api/v1/posts/preview", json={"body": "x"}), 401)
    assert_problem(await c.post("/api/v1/posts/preview", json={"body": "x", "format": "rtf"}, headers=alice.headers),
                   422)
    assert (await c.get("/api/v1/posts/mine", headers=alice.headers)).json()["items"] == []
