"""Security hardening of the blog (issue #16): moderators' reach, writers' standing, deletion of
another account, re-moderation of edited comments. Each test failed on the code before its fix."""

from __future__ import annotations

from blog_testkit import Blog, assert_problem


async def test_moderator_reads_only_posts_under_moderation(blog: Blog) -> None:
    """#16 item 4: a moderator neither reads nor comments on private or followers-only posts they are not
    entitled to; a hidden or reported post is readable to them (the moderation views), still not commentable."""
    alice, bob = blog.person("alice"), blog.person("bob")
    mod = blog.person("mod", roles=("moderator",))
    for p in (alice, bob, mod):
        await blog.register(p)
    await blog.follow(bob, alice)
    private = await blog.post(alice, "Diary", "Only mine.", visibility="private")
    friends = await blog.post(alice, "Friends", "For followers.", visibility="followers")
    for post in (private, friends):
        assert_problem(await blog.client.get(f"/api/v1/posts/{post['id']}", headers=mod.headers), 404)
        comments = await blog.client.get(f"/api/v1/posts/{post['id']}/comments", headers=mod.headers)
        assert_problem(comments, 404)
        made = await blog.client.post(
            f"/api/v1/posts/{post['id']}/comments", json={"body": "I see you"}, headers=mod.headers
        )
        assert_problem(made, 404)
        react = await blog.client.post(
            f"/api/v1/posts/{post['id']}/reactions", json={"kind": "like"}, headers=mod.headers
        )
        assert_problem(react, 404)
    # Bob (a follower) reports the followers-only post: now it is in the moderators' queue and readable.
    reported = await blog.client.post(
        f"/api/v1/posts/{friends['id']}/report", json={"reason": "spam"}, headers=bob.headers
    )
    assert reported.status_code == 201, reported.text
    got = await blog.client.get(f"/api/v1/posts/{friends['id']}", headers=mod.headers)
    assert got.status_code == 200 and got.json()["title"] == "Friends"
    made = await blog.client.post(
        f"/api/v1/posts/{friends['id']}/comments", json={"body": "moderator here"}, headers=mod.headers
    )
    assert_problem(made, 404)  # reading for review is not taking part
    # Dismissed: back out of reach. Hidden: in reach again.
    queue = (await blog.client.get("/api/v1/posts/moderation/queue", headers=mod.headers)).json()["items"]
    (report,) = [r for r in queue if r["target_id"] == friends["id"]]
    done = await blog.client.post(
        f"/api/v1/posts/moderation/reports/{report['id']}/resolve", json={"action": "dismiss"}, headers=mod.headers
    )
    assert done.status_code == 200, done.text
    assert_problem(await blog.client.get(f"/api/v1/posts/{friends['id']}", headers=mod.headers), 404)
    hidden = await blog.client.post(f"/api/v1/posts/{friends['id']}/hide", json={}, headers=mod.headers)
    assert hidden.status_code == 200, hidden.text
    assert (await blog.client.get(f"/api/v1/posts/{friends['id']}", headers=mod.headers)).status_code == 200
    # The private post stays out of reach throughout.
    assert_problem(await blog.client.get(f"/api/v1/posts/{private['id']}", headers=mod.headers), 404)


async def test_unverified_and_revoked_accounts_cannot_write(blog: Blog) -> None:
    """#16 items 2 and 10: every write goes through the SDK's WritingUser — an unverified account is refused
    (403) under the default policy; a deleted or suspended account (on the revocation list) at once (401),
    before the blog's replica has heard of it; reads still work for the unverified one; nothing is written."""
    import time
    import uuid

    import redis.asyncio as aioredis

    from quark_sdk.auth import UNVERIFIED_WRITER
    from quark_sdk.revocation import revoke_subject

    alice = blog.person("alice")
    await blog.register(alice)
    post = await blog.post(alice, "Open", "Anyone may comment.")
    mod = blog.person("mod", roles=("moderator",))
    fresh_id = str(uuid.uuid4())
    unverified = blog.quark.bearer(blog.quark.user_token(fresh_id, username="fresh", verified=False))
    unverified_mod = blog.quark.bearer(
        blog.quark.user_token(str(uuid.uuid4()), username="newmod", roles=("moderator",), verified=False)
    )
    writes = [
        ("POST", "/api/v1/posts", {"title": "t", "body": "b", "publish": True}),
        ("POST", f"/api/v1/posts/{post['id']}/comments", {"body": "hello"}),
        ("POST", f"/api/v1/posts/{post['id']}/reactions", {"kind": "like"}),
        ("POST", f"/api/v1/posts/{post['id']}/report", {"reason": "spam"}),
    ]
    for method, url, body in writes:
        refused = assert_problem(await blog.client.request(method, url, json=body, headers=unverified), 403)
        assert refused["detail"] == UNVERIFIED_WRITER
    hide = await blog.client.post(f"/api/v1/posts/{post['id']}/hide", json={}, headers=unverified_mod)
    assert assert_problem(hide, 403)["detail"] == UNVERIFIED_WRITER
    assert (await blog.client.get(f"/api/v1/posts/{post['id']}", headers=unverified)).status_code == 200

    # Bob writes, then his account is deleted: the revocation list refuses his still-valid token at once.
    bob = blog.person("bob")
    await blog.register(bob)
    bob_token = {"Authorization": bob.headers["Authorization"]}
    made = await blog.client.post(f"/api/v1/posts/{post['id']}/comments", json={"body": "first"}, headers=bob_token)
    assert made.status_code == 201, made.text
    redis = aioredis.from_url(blog.quark.servers.redis_url)
    try:
        await revoke_subject(redis, bob.id, namespace=blog.quark.namespace, at=time.time() + 1)
    finally:
        await redis.aclose()
    for method, url, body in [
        *writes,
        ("PATCH", f"/api/v1/comments/{made.json()['id']}", {"body": "edited"}),
        ("DELETE", f"/api/v1/comments/{made.json()['id']}", None),
    ]:
        assert_problem(await blog.client.request(method, url, json=body, headers=bob_token), 401)
    mod_token = mod.headers
    redis = aioredis.from_url(blog.quark.servers.redis_url)
    try:
        await revoke_subject(redis, mod.id, namespace=blog.quark.namespace, at=time.time() + 1)
    finally:
        await redis.aclose()
    assert_problem(await blog.client.post(f"/api/v1/posts/{post['id']}/hide", json={}, headers=mod_token), 401)
    # Nothing of theirs was written.
    got = (await blog.client.get(f"/api/v1/posts/{post['id']}")).json()
    assert got["comment_count"] == 1 and got["reactions"] == {} and not got["hidden"]
    thread = (await blog.client.get(f"/api/v1/posts/{post['id']}/comments")).json()["items"]
    assert [c["body_html"] for c in thread] == ["<p>first</p>"]


async def test_deleting_an_account_keeps_everyone_elses_comments(blog: Blog) -> None:
    """#16 item 13 (blog): when D deletes the account, D's posts and words go, but E's comments on D's posts
    stay (orphaned, listed in E's own comments and readable by E), E's reply to D's comment stays in its
    thread, and nothing of any other account is lost; D's text is gone from the database."""
    from sqlalchemy import text

    d, e, f = blog.person("dora"), blog.person("emil"), blog.person("fay")
    for p in (d, e, f):
        await blog.register(p)
    commented = await blog.post(d, "Dora's secret title", "Dora's own words.")
    lonely = await blog.post(d, "Nobody read this", "Dora alone.")
    emil_post = await blog.post(e, "Emil's post", "Emil writes.")

    async def comment(p: object, post_id: str, body: str, parent: str | None = None) -> dict[str, object]:
        resp = await blog.client.post(
            f"/api/v1/posts/{post_id}/comments",
            json={"body": body, **({"parent_id": parent} if parent else {})},
            headers=p.headers,  # type: ignore[attr-defined]
        )
        assert resp.status_code == 201, resp.text
        return resp.json()  # type: ignore[no-any-return]

    e_on_d = await comment(e, commented["id"], "Emil on Dora's post")
    f_on_d = await comment(f, commented["id"], "Fay on Dora's post")
    d_on_e = await comment(d, emil_post["id"], "Dora on Emil's post")
    e_reply = await comment(e, emil_post["id"], "Emil replies to Dora", parent=str(d_on_e["id"]))
    await blog.client.post(f"/api/v1/posts/{emil_post['id']}/reactions", json={"kind": "like"}, headers=f.headers)

    await blog.apply("quark.user.deleted", {"user_id": d.id})

    # D's posts are gone for everyone.
    for post in (commented, lonely):
        assert_problem(await blog.client.get(f"/api/v1/posts/{post['id']}", headers=e.headers), 404)
    # E and F keep their comments on D's (deleted) post: listed as theirs, readable by them.
    for person, mine in ((e, e_on_d), (f, f_on_d)):
        listed = (await blog.client.get("/api/v1/comments/mine", headers=person.headers)).json()["items"]
        assert mine["id"] in [c["id"] for c in listed]
        own = await blog.client.get(f"/api/v1/comments/{mine['id']}", headers=person.headers)
        assert own.status_code == 200 and own.json()["body_html"] == mine["body_html"], own.text
    assert_problem(await blog.client.get(f"/api/v1/comments/{e_on_d['id']}", headers=f.headers), 404)
    # On E's post: D's comment is an anonymous tombstone, E's reply to it and F's reaction stay.
    thread = (await blog.client.get(f"/api/v1/posts/{emil_post['id']}/comments")).json()["items"]
    assert [(c["id"], c["state"]) for c in thread] == [(d_on_e["id"], "deleted"), (e_reply["id"], "visible")]
    assert thread[0]["author"] is None and thread[1]["body_html"] == e_reply["body_html"]
    got = (await blog.client.get(f"/api/v1/posts/{emil_post['id']}")).json()
    assert got["reactions"] == {"like": 1} and got["comment_count"] == 1
    # No word of D's is left; every comment row of E and F is.
    async with blog.svc.ctx.database().session() as session:
        dump = (await session.execute(text("SELECT string_agg(p::text, ' ') FROM posts p"))).scalar_one()
        dump += (await session.execute(text("SELECT string_agg(c::text, ' ') FROM comments c"))).scalar_one()
        for words in ("secret title", "Dora's own words", "Nobody read this", "Dora alone", "Dora on Emil"):
            assert words not in dump
        kept = (
            await session.execute(
                text("SELECT count(*) FROM comments WHERE author_id IN (:e, :f) AND deleted_at IS NULL"),
                {"e": e.id, "f": f.id},
            )
        ).scalar_one()
        assert kept == 3
        assert (await session.execute(text("SELECT count(*) FROM posts WHERE id = :p"), {"p": lonely["id"]})
                ).scalar_one() == 0


async def test_comment_edit_is_published_for_moderation(blog: Blog) -> None:
    """#16 item 5 (blog): editing a comment publishes quark.comment.updated with the new text and the same
    fields as quark.comment.created (the AI service moderates it like a new comment); a flag on it hides the
    edited comment."""
    import json

    from quark_sdk.events import stream_for
    from quark_sdk.testing import eventually, read_stream

    alice, bob = blog.person("alice"), blog.person("bob")
    post = await blog.post(alice, "Open", "Say something.")
    made = await blog.client.post(f"/api/v1/posts/{post['id']}/comments", json={"body": "nice"}, headers=bob.headers)
    assert made.status_code == 201, made.text
    cid = made.json()["id"]
    edited = await blog.client.patch(f"/api/v1/comments/{cid}", json={"body": "you are *worthless*"},
                                     headers=bob.headers)
    assert edited.status_code == 200, edited.text

    async def published() -> dict[str, object] | None:
        bus = blog.svc.ctx.bus
        assert bus is not None
        messages = await read_stream(bus.js, stream_for("comment", blog.quark.namespace))
        events = {e["type"]: e["data"] for e in (json.loads(m.data or b"{}") for m in messages)}
        return events if "quark.comment.updated" in events else None

    events = await eventually(published, what="quark.comment.updated published")
    created, updated = events["quark.comment.created"], events["quark.comment.updated"]
    assert isinstance(created, dict) and isinstance(updated, dict)
    assert set(updated) == set(created) | {"updated_at"}
    assert updated["body_text"] == "you are worthless"
    assert {k: updated[k] for k in created if k != "body_text"} == {k: created[k] for k in created if k != "body_text"}
    # The moderation verdict on the edit hides the comment, as for a new one.
    await blog.apply("quark.ai.moderation_flagged", {
        "target_type": "comment", "target_id": cid, "labels": ["toxicity"], "score": 0.97, "reason": "insult",
        "run_id": "run-edit-1",
    })
    thread = (await blog.client.get(f"/api/v1/posts/{post['id']}/comments")).json()["items"]
    assert [(c["id"], c["state"], c["body_html"]) for c in thread] == [(cid, "hidden", "")]
