"""Reactions (consistent under concurrency), comments (threads, counts, authorization)."""

from __future__ import annotations

import asyncio

from blog_testkit import Blog, assert_problem


async def test_concurrent_reactions_keep_counts_exact(blog: Blog) -> None:
    alice = blog.person("alice")
    post = await blog.post(alice)
    url = f"/api/v1/posts/{post['id']}/reactions"
    fans = [blog.person(f"fan{i}") for i in range(25)]
    results = await asyncio.gather(
        *(blog.client.post(url, json={"kind": k}, headers=f.headers) for f in fans for k in ("like", "love"))
    )
    assert [r.status_code for r in results] == [201] * 50
    assert (await blog.client.get(url)).json()["counts"] == {"like": 25, "love": 25}
    # One user hammering the same reaction: exactly one wins.
    bob = blog.person("bob")
    same = await asyncio.gather(*(blog.client.post(url, json={"kind": "wow"}, headers=bob.headers) for _ in range(10)))
    assert sorted(r.status_code for r in same) == [201] + [409] * 9
    # Concurrent removals and additions.
    removed = await asyncio.gather(
        *(blog.client.delete(f"{url}/like", headers=f.headers) for f in fans[:10]),
        *(blog.client.delete(f"{url}/like", headers=fans[0].headers) for _ in range(3)),
    )
    assert sorted(r.status_code for r in removed) == [200] * 10 + [404] * 3
    counts = (await blog.client.get(url)).json()["counts"]
    assert counts == {"like": 15, "love": 25, "wow": 1}
    summary = (await blog.client.get("/api/v1/feed/public")).json()["items"][0]
    assert summary["reactions"] == counts


async def test_reacting_needs_a_visible_published_post(blog: Blog) -> None:
    alice, bob = blog.person("alice"), blog.person("bob")
    draft = (await blog.client.post("/api/v1/posts", json={"title": "d", "body": "d"}, headers=alice.headers)).json()
    private = await blog.post(alice, visibility="private")
    for pid in (draft["id"], private["id"]):
        assert_problem(
            await blog.client.post(f"/api/v1/posts/{pid}/reactions", json={"kind": "like"}, headers=bob.headers), 404
        )
    assert_problem(await blog.client.post(f"/api/v1/posts/{private['id']}/reactions", json={"kind": "like"}), 401)


async def test_threaded_comments_counts_and_tombstones(blog: Blog) -> None:
    alice, bob, carol = blog.person("alice"), blog.person("bob"), blog.person("carol")
    mod = blog.person("mod", roles=("moderator",))
    post = await blog.post(alice)
    url = f"/api/v1/posts/{post['id']}/comments"

    async def comment(who: object, body: str, parent: str | None = None) -> dict[str, object]:
        resp = await blog.client.post(url, json={"body": body, "parent_id": parent}, headers=who.headers)  # type: ignore[attr-defined]
        assert resp.status_code == 201, resp.text
        return resp.json()  # type: ignore[no-any-return]

    c1 = await comment(bob, "first")
    c2 = await comment(carol, "second")
    r1 = await comment(alice, "reply to first", str(c1["id"]))
    r11 = await comment(bob, "reply to reply", str(r1["id"]))
    listing = (await blog.client.get(url)).json()["items"]
    assert [(c["body_html"], c["depth"]) for c in listing] == [
        ("<p>first</p>", 0),
        ("<p>reply to first</p>", 1),
        ("<p>reply to reply</p>", 2),
        ("<p>second</p>", 0),
    ]
    assert listing[2]["parent_id"] == r1["id"]
    # Paginated in the same order.
    page1 = (await blog.client.get(url, params={"limit": 2})).json()
    page2 = (await blog.client.get(url, params={"limit": 2, "cursor": page1["next_cursor"]})).json()
    assert [c["id"] for c in page1["items"] + page2["items"]] == [c["id"] for c in listing]
    assert (await blog.client.get(f"/api/v1/posts/{post['id']}")).json()["comment_count"] == 4

    # Only the author edits or deletes; moderators hide.
    assert_problem(
        await blog.client.patch(f"/api/v1/comments/{c1['id']}", json={"body": "x"}, headers=carol.headers), 403
    )
    assert_problem(await blog.client.delete(f"/api/v1/comments/{c1['id']}", headers=alice.headers), 403)
    assert_problem(await blog.client.delete(f"/api/v1/comments/{c1['id']}"), 401)
    assert_problem(await blog.client.post(f"/api/v1/comments/{c1['id']}/hide", headers=bob.headers), 403)
    edited = await blog.client.patch(
        f"/api/v1/comments/{c1['id']}", json={"body": "first, edited"}, headers=bob.headers
    )
    assert edited.status_code == 200 and edited.json()["edited"] is True
    assert (await blog.client.delete(f"/api/v1/comments/{c1['id']}", headers=bob.headers)).status_code == 204
    assert (
        await blog.client.post(f"/api/v1/comments/{c2['id']}/hide", json={"reason": "rude"}, headers=mod.headers)
    ).status_code == 200
    listing = (await blog.client.get(url)).json()["items"]
    states = [(c["state"], c["body_html"], c["author"] is not None) for c in listing]
    assert states == [
        ("deleted", "", False),
        ("visible", "<p>reply to first</p>", True),
        ("visible", "<p>reply to reply</p>", True),
        ("hidden", "", True),
    ]
    assert (await blog.client.get(url, headers=mod.headers)).json()["items"][3]["body_html"] == "<p>second</p>"
    assert (await blog.client.get(f"/api/v1/posts/{post['id']}")).json()["comment_count"] == 2
    # No replies to deleted comments; parents must belong to the post.
    assert_problem(await blog.client.post(url, json={"body": "x", "parent_id": c1["id"]}, headers=carol.headers), 409)
    other = await blog.post(alice, "other")
    assert_problem(
        await blog.client.post(
            f"/api/v1/posts/{other['id']}/comments", json={"body": "x", "parent_id": r11["id"]}, headers=carol.headers
        ),
        422,
    )
    assert_problem(await blog.client.post(url, json={"body": "x" * 10_001}, headers=carol.headers), 413)
    assert_problem(await blog.client.post(url, json={"body": ""}, headers=carol.headers), 422)
    assert (await blog.client.post(f"/api/v1/comments/{c2['id']}/restore", headers=mod.headers)).status_code == 200
    assert (await blog.client.get(f"/api/v1/posts/{post['id']}")).json()["comment_count"] == 3


async def test_post_by_slug_with_its_comments_in_one_request(blog: Blog) -> None:
    alice, bob = blog.person("alice"), blog.person("bob")
    await blog.register(alice)
    await blog.register(bob)
    post = await blog.post(alice, "Talk to me")
    for n in range(3):
        made = await blog.client.post(
            f"/api/v1/posts/{post['id']}/comments", json={"body": f"c{n}"}, headers=bob.headers
        )
        assert made.status_code == 201, made.text
    by_slug = f"/api/v1/posts/by/alice/{post['slug']}"
    # Without `comments` the post is as before, its comments null.
    plain = (await blog.client.get(by_slug, headers=bob.headers)).json()
    assert plain["comments"] is None and plain["id"] == post["id"]
    # With it: the first page `GET /posts/{id}/comments` answers, with its cursor to page on there.
    both = await blog.client.get(by_slug, params={"comments": 2}, headers=bob.headers)
    assert both.status_code == 200, both.text
    listed = (await blog.client.get(f"/api/v1/posts/{post['id']}/comments", params={"limit": 2}, headers=bob.headers))
    assert both.json()["comments"] == listed.json()
    assert [c["body_html"] for c in listed.json()["items"]] == ["<p>c0</p>", "<p>c1</p>"]
    rest = await blog.client.get(
        f"/api/v1/posts/{post['id']}/comments", params={"cursor": both.json()["comments"]["next_cursor"]}
    )
    assert [c["body_html"] for c in rest.json()["items"]] == ["<p>c2</p>"]
    assert {**both.json(), "comments": None} == plain
    anonymous = (await blog.client.get(by_slug, params={"comments": 100})).json()
    assert len(anonymous["comments"]["items"]) == 3 and anonymous["comments"]["next_cursor"] is None
    # Validated: 0..100; a hidden post stays hidden with or without its comments.
    for bad in ({"comments": -1}, {"comments": 101}, {"comments": "all"}):
        assert_problem(await blog.client.get(by_slug, params=bad, headers=bob.headers), 422)
    made = await blog.client.post("/api/v1/posts", json={"title": "Secret", "body": "s"}, headers=alice.headers)
    hidden = f"/api/v1/posts/by/alice/{made.json()['slug']}"
    assert_problem(await blog.client.get(hidden, params={"comments": 5}, headers=bob.headers), 404)
