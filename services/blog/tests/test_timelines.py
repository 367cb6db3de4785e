"""Home timelines (fan-out on write into Redis, database behind it) driven by quark.user.* events."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from blog_testkit import Blog, Person

from quark_sdk.testing import QuarkTestEnv, eventually


async def _people(blog: Blog, *names: str) -> list[Person]:
    people = [blog.person(n) for n in names]
    for p in people:
        await blog.register(p)
    return people


async def _eventually_home(blog: Blog, who: Person, expected: list[str]) -> None:
    async def probe() -> bool:
        return await blog.home(who) == expected

    await eventually(probe, what=f"home of {who.username} == {expected}")


async def test_publish_fans_out_to_followers(blog: Blog) -> None:
    alice, bob, carol = await _people(blog, "alice", "bob", "carol")
    await blog.follow(bob, alice)
    assert await blog.home(bob) == []  # bob's timeline is now warm (built from the database)
    assert await blog.home(carol) == []
    post = await blog.post(alice, "News")
    await _eventually_home(blog, bob, [post["id"]])
    await blog.fanned_out(post["id"])
    assert await blog.home(carol) == []
    assert await blog.home(alice) == [post["id"]]  # authors see their own posts
    # The entry really came from Redis (fan-out), not from a rebuild.
    members = await blog.rt.timelines.read(bob.id, max_score=None, count=10)
    assert members is not None and [m for _, m in members[1]] == [post["id"]]


async def test_authors_read_their_own_post_before_the_fan_out(blog: Blog) -> None:
    """Read your own writes: with the consumers stopped (the fan-out has not run), the author's warm home
    timeline already holds the post they just published; a follower's does not yet."""
    from quark_sdk.app import start_consumers, stop_consumers

    alice, bob = await _people(blog, "alice", "bob")
    await blog.follow(bob, alice)
    assert await blog.home(alice) == [] and await blog.home(bob) == []  # both warm
    await stop_consumers(blog.svc.ctx)
    try:
        post = await blog.post(alice, "Fresh")
        draft = await blog.post(alice, "Later", publish=False)
        members = await blog.rt.timelines.read(alice.id, max_score=None, count=10)
        assert members is not None and [m for _, m in members[1]] == [post["id"]]
        assert await blog.home(alice) == [post["id"]]
        assert await blog.home(bob) == []
        resp = await blog.client.post(f"/api/v1/posts/{draft['id']}/publish", headers=alice.headers)
        assert resp.status_code == 200, resp.text
        assert await blog.home(alice) == [draft["id"], post["id"]]
    finally:
        await start_consumers(blog.svc.ctx)
    await _eventually_home(blog, bob, [draft["id"], post["id"]])


async def test_follow_backfills_and_unfollow_removes(blog: Blog) -> None:
    alice, bob = await _people(blog, "alice", "bob")
    old = [(await blog.post(alice, f"old {i}"))["id"] for i in range(3)]
    own = (await blog.post(bob, "mine"))["id"]
    assert await blog.home(bob) == [own]
    await blog.follow(bob, alice)
    assert await blog.home(bob) == [own, *reversed(old)]
    await blog.apply(
        "quark.user.unfollowed", {"follower_id": bob.id, "followee_id": alice.id, "at": datetime.now(UTC).isoformat()}
    )
    assert await blog.home(bob) == [own]
    members = await blog.rt.timelines.read(bob.id, max_score=None, count=10)
    assert members is not None and [m for _, m in members[1]] == [own]


async def test_delete_hide_unpublish_and_visibility_changes_leave_timelines(blog: Blog) -> None:
    alice, bob = await _people(blog, "alice", "bob")
    mod = blog.person("mod", roles=("moderator",))
    await blog.follow(bob, alice)
    await blog.home(bob)
    p1, p2, p3, p4 = [(await blog.post(alice, f"p{i}"))["id"] for i in range(4)]
    await _eventually_home(blog, bob, [p4, p3, p2, p1])
    await blog.client.delete(f"/api/v1/posts/{p1}", headers=alice.headers)
    await blog.client.post(f"/api/v1/posts/{p2}/hide", headers=mod.headers)
    await blog.client.post(f"/api/v1/posts/{p3}/unpublish", headers=alice.headers)
    await blog.client.patch(f"/api/v1/posts/{p4}", json={"visibility": "private"}, headers=alice.headers)
    assert await blog.home(bob) == []  # filtered at once from the database, before any fan-out ran
    await blog.fanned_out(p4)
    members = await blog.rt.timelines.read(bob.id, max_score=None, count=10)
    assert members is not None and members[1] == []  # and removed from Redis by the fan-out consumer
    assert await blog.home(alice) == [p4]  # the private post stays on its author's own timeline
    await blog.client.post(f"/api/v1/posts/{p2}/restore", headers=mod.headers)
    await _eventually_home(blog, bob, [p2])


async def test_blocks_remove_both_ways(blog: Blog) -> None:
    alice, bob = await _people(blog, "alice", "bob")
    await blog.follow(bob, alice)
    await blog.follow(alice, bob)
    a = (await blog.post(alice, "from alice"))["id"]
    b = (await blog.post(bob, "from bob"))["id"]
    await _eventually_home(blog, bob, [b, a])
    await _eventually_home(blog, alice, [b, a])
    await blog.apply(
        "quark.user.blocked", {"blocker_id": alice.id, "blocked_id": bob.id, "at": datetime.now(UTC).isoformat()}
    )
    assert await blog.home(bob) == [b]
    assert await blog.home(alice) == [a]
    # A follow across a block is ignored, the public listing hides blocked authors too.
    await blog.follow(bob, alice)
    assert await blog.home(bob) == [b]
    public = [p["id"] for p in (await blog.client.get("/api/v1/feed/public", headers=bob.headers)).json()["items"]]
    assert public == [b]
    await blog.apply(
        "quark.user.unblocked", {"blocker_id": alice.id, "blocked_id": bob.id, "at": datetime.now(UTC).isoformat()}
    )
    await blog.follow(bob, alice)
    assert await blog.home(bob) == [b, a]


async def test_suspended_and_deleted_authors_disappear(blog: Blog) -> None:
    alice, bob, carol = await _people(blog, "alice", "bob", "carol")
    await blog.follow(bob, alice)
    post = await blog.post(alice, "bye")
    await blog.post(carol, "carol's")
    c = (
        await blog.client.post(f"/api/v1/posts/{post['id']}/comments", json={"body": "hi"}, headers=bob.headers)
    ).json()
    await _eventually_home(blog, bob, [post["id"]])
    await blog.apply(
        "quark.user.suspended", {"user_id": alice.id, "suspended": True, "reason": "spam", "actor_id": "admin"}
    )
    assert await blog.home(bob) == []
    assert (await blog.client.get(f"/api/v1/posts/{post['id']}")).status_code == 404
    await blog.apply(
        "quark.user.suspended", {"user_id": alice.id, "suspended": False, "reason": None, "actor_id": "admin"}
    )
    assert await blog.home(bob) == [post["id"]]
    # Bob's comment and reaction elsewhere are anonymised / removed when bob is deleted.
    carol_post = (await blog.client.get("/api/v1/posts/by/carol")).json()["items"][0]["id"]
    await blog.client.post(f"/api/v1/posts/{carol_post}/reactions", json={"kind": "like"}, headers=bob.headers)
    await blog.client.post(f"/api/v1/posts/{carol_post}/comments", json={"body": "yo"}, headers=bob.headers)
    await blog.apply("quark.user.deleted", {"user_id": alice.id})
    assert await blog.home(bob) == []
    assert (await blog.client.get("/api/v1/posts/by/alice")).status_code == 404
    assert (await blog.client.get(f"/api/v1/comments/{c['id']}")).status_code == 404
    await blog.apply("quark.user.deleted", {"user_id": bob.id})
    got = (await blog.client.get(f"/api/v1/posts/{carol_post}")).json()
    assert got["reactions"] == {} and got["comment_count"] == 0
    comments = (await blog.client.get(f"/api/v1/posts/{carol_post}/comments")).json()["items"]
    assert [(x["state"], x["author"]) for x in comments] == [("deleted", None)]


async def test_capped_timeline_continues_from_the_database(quark: QuarkTestEnv) -> None:
    from quark_blog.app import module

    svc = await quark.start(module, timeline_cap=10, write_rate_limit=100_000)
    blog = Blog(quark, svc)
    for runner in svc.ctx.consumers:
        await eventually(lambda r=runner: r.ready.is_set())
    alice, bob = await _people(blog, "alice", "bob")
    await blog.follow(bob, alice)
    await blog.home(bob)
    ids = [(await blog.post(alice, f"n{i}"))["id"] for i in range(25)]
    for pid in ids:
        await blog.fanned_out(pid)
    state = await blog.rt.timelines.read(bob.id, max_score=None, count=100)
    assert state is not None and len(state[1]) == 10 and state[0] > 0  # capped, floor raised
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 7, **({"cursor": cursor} if cursor else {})}
        resp = (await blog.client.get("/api/v1/feed/home", params=params, headers=bob.headers)).json()
        seen += [p["id"] for p in resp["items"]]
        cursor = resp["next_cursor"]
        if not cursor:
            break
    assert seen == list(reversed(ids))


async def test_cold_timeline_is_built_from_the_database(blog: Blog) -> None:
    alice, bob = await _people(blog, "alice", "bob")
    await blog.follow(bob, alice)
    posts = [
        (await blog.post(alice, f"x{i}", visibility=v))["id"] for i, v in enumerate(["public", "followers", "private"])
    ]
    for pid in posts:
        await blog.fanned_out(pid)
    await blog.rt.timelines.drop(bob.id)  # expired or never read
    assert await blog.home(bob) == [posts[1], posts[0]]
    assert await blog.rt.timelines.read(bob.id, max_score=None, count=10) is not None
