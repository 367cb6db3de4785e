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
