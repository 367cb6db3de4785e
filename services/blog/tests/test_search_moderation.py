"""Full-text search (ranking, snippets, filters) and moderation (reports, queue, hide/restore, AI flags)."""

from __future__ import annotations

import uuid
from typing import Any

from blog_testkit import Blog, assert_problem


async def _search(blog: Blog, **params: Any) -> list[dict[str, Any]]:
    resp = await blog.client.get("/api/v1/search", params=params)
    assert resp.status_code == 200, resp.text
    return resp.json()["items"]  # type: ignore[no-any-return]


async def test_ranking_title_beats_tags_beats_body(blog: Blog) -> None:
    alice, bob = blog.person("alice"), blog.person("bob")
    body_only = await blog.post(alice, "Weekend notes", "I went hiking and thought about databases a little.")
    in_title = await blog.post(bob, "Databases for beginners", "An introduction.")
    tagged = await blog.post(alice, "Misc", "Nothing to see.", tags=["databases"])
    await blog.post(alice, "Unrelated", "Cooking pasta.")
    hits = await _search(blog, q="database")  # stemming: database ~ databases
    assert [h["id"] for h in hits] == [in_title["id"], tagged["id"], body_only["id"]]
    assert hits[0]["rank"] > hits[1]["rank"] > hits[2]["rank"]
    assert "<mark>databases</mark>" in hits[2]["snippet"]
    # Filters.
    assert [h["id"] for h in await _search(blog, q="database", author="alice")] == [tagged["id"], body_only["id"]]
    assert [h["id"] for h in await _search(blog, q="database", tag="databases")] == [tagged["id"]]
    assert await _search(blog, q="database", since="2999-01-01T00:00:00Z") == []
    assert await _search(blog, q="database", category="cooking") == []
    mod = blog.person("mod", roles=("moderator",))
    made = await blog.client.post(
        "/api/v1/posts/categories", json={"slug": "tech", "name": "Tech"}, headers=mod.headers
    )
    assert made.status_code == 201, made.text
    in_cat = await blog.post(bob, "More about databases", "Indexes.", category="tech")
    assert [h["id"] for h in await _search(blog, q="database", category="tech")] == [in_cat["id"]]
    await blog.client.delete(f"/api/v1/posts/{in_cat['id']}", headers=bob.headers)
    assert len(await _search(blog, q="database", until="2999-01-01T00:00:00Z")) == 3
    # Pagination by rank.
    first = (await blog.client.get("/api/v1/search", params={"q": "database", "limit": 2})).json()
    rest = (
        await blog.client.get("/api/v1/search", params={"q": "database", "limit": 2, "cursor": first["next_cursor"]})
    ).json()
    assert [h["id"] for h in first["items"] + rest["items"]] == [h["id"] for h in hits]
    assert rest["next_cursor"] is None


async def test_search_snippets_are_escaped_and_respect_visibility(blog: Blog) -> None:
    alice, bob = blog.person("alice"), blog.person("bob")
    mod = blog.person("mod", roles=("moderator",))
    shown = await blog.post(alice, "Escapes", "Writing `<script>alert(1)</script>` about 5 < 6 & zebras is fine.")
    secret = await blog.post(alice, "Zebras secret", "zebras", visibility="private")
    hidden = await blog.post(bob, "Zebras hidden", "zebras")
    draft = await blog.client.post(
        "/api/v1/posts", json={"title": "Zebras draft", "body": "zebras"}, headers=alice.headers
    )
    assert draft.status_code == 201
    await blog.client.post(f"/api/v1/posts/{hidden['id']}/hide", headers=mod.headers)
    hits = await _search(blog, q="zebras")
    assert [h["id"] for h in hits] == [shown["id"]]
    assert "<script" not in hits[0]["snippet"] and "5 &lt; 6 &amp; <mark>zebras</mark>" in hits[0]["snippet"]
    assert "<mark>zebras</mark>" in hits[0]["snippet"]
    own = [
        h["id"]
        for h in (await blog.client.get("/api/v1/search", params={"q": "zebras"}, headers=alice.headers)).json()[
            "items"
        ]
    ]
    assert set(own) == {shown["id"], secret["id"]}


async def test_reports_queue_and_resolution(blog: Blog) -> None:
    alice, bob, carol = blog.person("alice"), blog.person("bob"), blog.person("carol")
    mod = blog.person("mod", roles=("moderator",))
    post = await blog.post(alice, "Spicy", "Spicy take about kiwis")
    url = f"/api/v1/posts/{post['id']}/report"
    r1 = await blog.client.post(url, json={"reason": "spam"}, headers=bob.headers)
    assert r1.status_code == 201, r1.text
    assert_problem(await blog.client.post(url, json={"reason": "again"}, headers=bob.headers), 409)
    assert_problem(await blog.client.post(url, json={"reason": ""}, headers=carol.headers), 422)
    assert_problem(await blog.client.post(url, json={"reason": "x"}), 401)
    assert_problem(
        await blog.client.post(f"/api/v1/posts/{uuid.uuid4()}/report", json={"reason": "x"}, headers=carol.headers), 404
    )
    assert (await blog.client.post(url, json={"reason": "rude"}, headers=carol.headers)).status_code == 201
    assert_problem(await blog.client.get("/api/v1/posts/moderation/queue", headers=bob.headers), 403)
    queue = (await blog.client.get("/api/v1/posts/moderation/queue", headers=mod.headers)).json()["items"]
    assert [(q["reason"], q["source"], q["target_hidden"]) for q in queue] == [
        ("spam", "user", False),
        ("rude", "user", False),
    ]
    assert queue[0]["target_preview"].startswith("Spicy: ")
    resolve = f"/api/v1/posts/moderation/reports/{queue[0]['id']}/resolve"
    assert_problem(await blog.client.post(resolve, json={"action": "hide"}, headers=bob.headers), 403)
    assert_problem(await blog.client.post(resolve, json={"action": "nuke"}, headers=mod.headers), 422)
    done = await blog.client.post(resolve, json={"action": "hide", "reason": "spam"}, headers=mod.headers)
    assert done.status_code == 200 and done.json()["resolution"] == "hidden"
    assert_problem(await blog.client.post(resolve, json={"action": "hide"}, headers=mod.headers), 409)
    # Both reports on the post are resolved; the post left feeds and search but its author still sees it.
    assert (await blog.client.get("/api/v1/posts/moderation/queue", headers=mod.headers)).json()["items"] == []
    assert (await blog.client.get("/api/v1/feed/public")).json()["items"] == []
    assert await _search(blog, q="kiwis") == []
    assert_problem(await blog.client.get(f"/api/v1/posts/{post['id']}"), 404)
    own = (await blog.client.get(f"/api/v1/posts/{post['id']}", headers=alice.headers)).json()
    assert own["hidden"] is True and own["hidden_reason"] == "spam"
    assert (await blog.client.get(f"/api/v1/posts/{post['id']}", headers=mod.headers)).status_code == 200
    # Interactions with a hidden post are refused.
    assert_problem(
        await blog.client.post(f"/api/v1/posts/{post['id']}/reactions", json={"kind": "like"}, headers=alice.headers),
        409,
    )
    restored = await blog.client.post(f"/api/v1/posts/{post['id']}/restore", headers=mod.headers)
    assert restored.status_code == 200 and restored.json()["hidden"] is False
    assert len(await _search(blog, q="kiwis")) == 1


async def test_ai_flag_hides_pending_review(blog: Blog) -> None:
    alice, bob = blog.person("alice"), blog.person("bob")
    mod = blog.person("mod", roles=("moderator",))
    post = await blog.post(alice, "Flag me", "borderline words")
    comment = (
        await blog.client.post(f"/api/v1/posts/{post['id']}/comments", json={"body": "nasty"}, headers=bob.headers)
    ).json()
    await blog.apply(
        "quark.ai.moderation_flagged",
        {
            "target_type": "comment",
            "target_id": comment["id"],
            "score": 0.97,
            "labels": ["toxicity"],
            "reason": None,
            "run_id": "r1",
        },
    )
    flag = {
        "target_type": "post",
        "target_id": post["id"],
        "score": 0.91,
        "labels": ["spam"],
        "reason": "looks like spam",
        "run_id": "r2",
    }
    await blog.apply("quark.ai.moderation_flagged", flag)
    assert (await blog.client.get("/api/v1/feed/public")).json()["items"] == []
    assert (await blog.client.get(f"/api/v1/comments/{comment['id']}", headers=mod.headers)).json()["state"] == "hidden"
    queue = (await blog.client.get("/api/v1/posts/moderation/queue", headers=mod.headers)).json()["items"]
    assert [(q["target_type"], q["source"], q["score"], q["labels"], q["target_hidden"]) for q in queue] == [
        ("comment", "ai", 0.97, ["toxicity"], True),
        ("post", "ai", 0.91, ["spam"], True),
    ]
    # Flags for unknown or foreign ids are ignored, not retried forever.
    await blog.apply("quark.ai.moderation_flagged", {**flag, "target_id": "not-a-uuid"})
    await blog.apply("quark.ai.moderation_flagged", {**flag, "target_id": str(uuid.uuid4())})
    resolved = await blog.client.post(
        f"/api/v1/posts/moderation/reports/{queue[1]['id']}/resolve", json={"action": "restore"}, headers=mod.headers
    )
    assert resolved.json()["resolution"] == "restored"
    assert [p["id"] for p in (await blog.client.get("/api/v1/feed/public")).json()["items"]] == [post["id"]]
