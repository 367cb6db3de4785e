"""The social graph: follows and their counters, follow requests, blocks, mutes, privacy rules."""

import asyncio

from user_testkit import assert_problem, start

from quark_sdk.testing import QuarkTestEnv


async def test_follow_and_unfollow_keep_counts_and_lists_consistent(quark: QuarkTestEnv) -> None:
    h = await start(quark)
    alice, bob = await h.accounts("alice", "bob")

    resp = await h.post("/bob/follow", alice)
    assert resp.status_code == 201, resp.text
    assert resp.json() == {"status": "following"}
    assert (await h.profile("bob"))["followers_count"] == 1
    assert (await h.profile("alice"))["following_count"] == 1
    assert [i["user"]["username"] for i in (await h.get("/bob/followers")).json()["items"]] == ["alice"]
    assert [i["user"]["username"] for i in (await h.get("/alice/following")).json()["items"]] == ["bob"]
    assert (await h.profile("bob", alice))["relationship"]["following"] is True
    assert (await h.profile("alice", bob))["relationship"]["followed_by"] is True
    [followed] = await h.published("quark.user.followed")
    assert (followed["follower_id"], followed["follower_username"]) == (alice.id, "alice")
    assert (followed["followee_id"], followed["followee_username"]) == (bob.id, "bob")
    assert followed["at"]

    assert (await h.delete("/bob/follow", alice)).status_code == 204
    assert (await h.profile("bob"))["followers_count"] == 0
    assert (await h.profile("alice"))["following_count"] == 0
    assert (await h.get("/bob/followers")).json()["items"] == []
    [unfollowed] = await h.published("quark.user.unfollowed")
    assert (unfollowed["follower_id"], unfollowed["followee_id"]) == (alice.id, bob.id)
    kinds = [a["kind"] for a in (await h.get("/me/activity", alice)).json()["items"]]
    assert kinds[:2] == ["unfollowed", "followed"]
    await h.graph_consistent()


async def test_concurrent_follows_stay_consistent(quark: QuarkTestEnv) -> None:
    h = await start(quark)
    star = await h.register("star")
    fans = await h.accounts(*(f"fan{i}" for i in range(8)))
    # Both directions at once (lock order matters here) ...
    results = await asyncio.gather(*(h.post("/star/follow", f) for f in fans),
                                   *(h.post(f"/{f.username}/follow", star) for f in fans))
    assert [r.status_code for r in results] == [201] * 16
    # ... and the same follow five times at once: exactly one wins, the rest are conflicts, none is a 500.
    await asyncio.gather(*(h.delete("/star/follow", f) for f in fans[:1]))
    racing = await asyncio.gather(*(h.post("/star/follow", fans[0]) for _ in range(5)))
    assert sorted(r.status_code for r in racing) == [201, 409, 409, 409, 409]
    star_profile = await h.profile("star")
    assert (star_profile["followers_count"], star_profile["following_count"]) == (8, 8)
    await h.graph_consistent()
    unfollows = await asyncio.gather(*(h.delete("/star/follow", f) for f in fans),
                                     *(h.delete(f"/{f.username}/follow", star) for f in fans))
    assert all(r.status_code == 204 for r in unfollows)
    star_profile = await h.profile("star")
    assert (star_profile["followers_count"], star_profile["following_count"]) == (0, 0)
    await h.graph_consistent()


async def test_follow_requests_for_followers_only_accounts(quark: QuarkTestEnv) -> None:
    h = await start(quark)
    alice, bob, carol, dave = await h.accounts("alice", "bob", "carol", "dave")
    assert (await h.patch("/me", carol, json={"privacy": "followers"})).status_code == 200

    resp = await h.post("/carol/follow", alice)
    assert resp.status_code == 202, resp.text
    assert resp.json() == {"status": "requested"}
    assert_problem(await h.post("/carol/follow", alice), 409)
    assert (await h.post("/carol/follow", bob)).status_code == 202
    assert (await h.post("/carol/follow", dave)).status_code == 202
    assert (await h.profile("carol", alice))["relationship"]["requested"] is True
    assert (await h.profile("carol"))["followers_count"] == 0
    requested = await h.published("quark.user.follow_requested")
    assert [(e["follower_id"], e["followee_id"]) for e in requested] == [
        (alice.id, carol.id), (bob.id, carol.id), (dave.id, carol.id)]

    pending = (await h.get("/me/follow-requests", carol)).json()["items"]
    assert [p["user"]["username"] for p in pending] == ["dave", "bob", "alice"]

    assert (await h.post("/me/follow-requests/alice/approve", carol)).status_code == 204
    assert (await h.profile("carol"))["followers_count"] == 1
    assert (await h.profile("carol", alice))["relationship"]["following"] is True
    [followed] = await h.published("quark.user.followed")
    assert (followed["follower_id"], followed["followee_id"]) == (alice.id, carol.id)

    assert (await h.post("/me/follow-requests/bob/reject", carol)).status_code == 204
    assert (await h.profile("carol", bob))["relationship"]["requested"] is False
    assert_problem(await h.post("/me/follow-requests/bob/approve", carol), 404)
    assert_problem(await h.post("/me/follow-requests/alice/approve", carol), 404)

    # The requester withdraws a pending request with the same DELETE that unfollows.
    assert (await h.delete("/carol/follow", dave)).status_code == 204
    assert (await h.get("/me/follow-requests", carol)).json()["items"] == []
    assert (await h.profile("carol"))["followers_count"] == 1
    await h.graph_consistent()


async def test_going_public_approves_pending_requests(quark: QuarkTestEnv) -> None:
    h = await start(quark)
    alice, bob, carol = await h.accounts("alice", "bob", "carol")
    await h.patch("/me", carol, json={"privacy": "followers"})
    await h.post("/carol/follow", alice)
    await h.post("/carol/follow", bob)
    assert (await h.patch("/me", carol, json={"privacy": "public"})).json()["followers_count"] == 2
    assert (await h.get("/me/follow-requests", carol)).json()["items"] == []
    assert len(await h.published("quark.user.followed")) == 2
    await h.graph_consistent()


async def test_privacy_rules_for_followers_only_profiles(quark: QuarkTestEnv) -> None:
    h = await start(quark)
    alice, bob, carol = await h.accounts("alice", "bob", "carol")
    admin = await h.register("root", roles=("admin",))
    await h.patch("/me", carol, json={"bio": "secret bio", "links": ["https://carol.example"], "locale": "fr",
                                      "privacy": "followers"})
    await h.post("/carol/follow", alice)
    await h.post("/me/follow-requests/alice/approve", carol)

    for who in (None, bob):
        view = await h.profile("carol", who)
        assert view["restricted"] is True
        assert (view["bio"], view["links"], view["locale"]) == (None, None, None)
        assert view["username"] == "carol" and view["followers_count"] == 1
        assert_problem(await h.get("/carol/followers", who), 403)
        assert_problem(await h.get("/carol/following", who), 403)
    for who in (alice, carol, admin):
        view = await h.profile("carol", who)
        assert view["restricted"] is False and view["bio"] == "secret bio"
        assert view["links"] == ["https://carol.example"] and view["locale"] == "fr"
        assert (await h.get("/carol/followers", who)).status_code == 200
        assert (await h.get("/carol/following", who)).status_code == 200
    # Public profiles show everything to everyone, anonymous included.
    await h.patch("/me", bob, json={"bio": "open book"})
    assert (await h.profile("bob"))["bio"] == "open book"
    assert (await h.get("/bob/followers")).status_code == 200


async def test_block_removes_follows_both_ways_and_prevents_following(quark: QuarkTestEnv) -> None:
    h = await start(quark)
    alice, bob = await h.accounts("alice", "bob")
    await h.post("/bob/follow", alice)
    await h.post("/alice/follow", bob)

    assert (await h.post("/bob/block", alice)).status_code == 204
    for name in ("alice", "bob"):
        p = await h.profile(name)
        assert (p["followers_count"], p["following_count"]) == (0, 0)
    unfollowed = await h.published("quark.user.unfollowed")
    assert {(e["follower_id"], e["followee_id"]) for e in unfollowed} == {(alice.id, bob.id), (bob.id, alice.id)}
    [blocked] = await h.published("quark.user.blocked")
    assert (blocked["blocker_id"], blocked["blocked_id"]) == (alice.id, bob.id)

    before = await h.snapshot()
    assert_problem(await h.post("/alice/follow", bob), 403)  # the blocked user cannot follow
    assert_problem(await h.post("/bob/follow", alice), 409)  # the blocker must unblock first
    assert_problem(await h.post("/bob/block", alice), 409)
    assert await h.snapshot() == before

    view = await h.profile("alice", bob)
    assert view["restricted"] is True and view["relationship"]["blocked_by"] is True
    assert (await h.profile("bob", alice))["relationship"]["blocking"] is True
    assert [i["user"]["username"] for i in (await h.get("/me/blocks", alice)).json()["items"]] == ["bob"]

    assert (await h.delete("/bob/block", alice)).status_code == 204
    [unblocked] = await h.published("quark.user.unblocked")
    assert (unblocked["blocker_id"], unblocked["blocked_id"]) == (alice.id, bob.id)
    assert (await h.get("/me/blocks", alice)).json()["items"] == []
    assert (await h.post("/alice/follow", bob)).status_code == 201
    await h.graph_consistent()


async def test_block_drops_pending_follow_requests(quark: QuarkTestEnv) -> None:
    h = await start(quark)
    alice, bob = await h.accounts("alice", "bob")
    await h.patch("/me", alice, json={"privacy": "followers"})
    assert (await h.post("/alice/follow", bob)).status_code == 202
    assert (await h.post("/bob/block", alice)).status_code == 204
    assert (await h.get("/me/follow-requests", alice)).json()["items"] == []


async def test_mute_is_private_and_changes_nothing_else(quark: QuarkTestEnv) -> None:
    h = await start(quark)
    alice, bob = await h.accounts("alice", "bob")
    await h.post("/bob/follow", alice)
    assert (await h.post("/bob/mute", alice)).status_code == 204
    assert (await h.profile("bob", alice))["relationship"] == {
        "following": True, "requested": False, "followed_by": False, "blocking": False, "blocked_by": False,
        "muting": True}
    assert (await h.profile("alice", bob))["relationship"]["muting"] is False
    assert (await h.profile("bob"))["followers_count"] == 1
    assert [i["user"]["username"] for i in (await h.get("/me/mutes", alice)).json()["items"]] == ["bob"]
    [muted] = await h.published("quark.user.muted")
    assert (muted["muter_id"], muted["muted_id"]) == (alice.id, bob.id) and muted["at"]
    assert (await h.post("/bob/follow", bob)).status_code == 422
    assert (await h.delete("/bob/mute", alice)).status_code == 204
    [unmuted] = await h.published("quark.user.unmuted")
    assert (unmuted["muter_id"], unmuted["muted_id"]) == (alice.id, bob.id)
    assert (await h.get("/me/mutes", alice)).json()["items"] == []


async def test_removing_a_follower(quark: QuarkTestEnv) -> None:
    h = await start(quark)
    alice, bob = await h.accounts("alice", "bob")
    await h.post("/bob/follow", alice)
    assert (await h.delete("/me/followers/alice", bob)).status_code == 204
    assert (await h.profile("bob"))["followers_count"] == 0
    assert_problem(await h.delete("/me/followers/alice", bob), 404)
    [e] = await h.published("quark.user.unfollowed")
    assert (e["follower_id"], e["followee_id"]) == (alice.id, bob.id)
    await h.graph_consistent()


async def test_follow_attempts_are_rate_limited(quark: QuarkTestEnv) -> None:
    h = await start(quark, follow_rate_limit=2, follow_rate_window=3600)
    alice, *others = await h.accounts("alice", "b1", "b2", "b3")
    assert (await h.post("/b1/follow", alice)).status_code == 201
    assert (await h.post("/b2/follow", alice)).status_code == 201
    resp = await h.post("/b3/follow", alice)
    assert_problem(resp, 429)
    assert int(resp.headers["Retry-After"]) >= 1
    assert (await h.profile("b3"))["followers_count"] == 0
    assert (await h.post("/b3/follow", others[0])).status_code == 201  # per user, not global


async def test_privacy_switch_racing_with_requesters_never_fails(quark: QuarkTestEnv) -> None:
    h = await start(quark)
    carol = await h.register("carol")
    fans = await h.accounts(*(f"fan{i}" for i in range(6)))
    await h.patch("/me", carol, json={"privacy": "followers"})
    for fan in fans:
        assert (await h.post("/carol/follow", fan)).status_code == 202
    results = await asyncio.gather(
        h.patch("/me", carol, json={"privacy": "public"}),
        *(h.post(f"/{f.username}/follow", carol) for f in fans),
        *(h.post(f"/{fans[(i + 1) % 6].username}/follow", f) for i, f in enumerate(fans)),
        *(h.post("/carol/follow", f) for f in fans),
    )
    assert all(r.status_code < 500 for r in results), [r.text for r in results if r.status_code >= 500]
    assert (await h.profile("carol"))["followers_count"] == 6
    await h.graph_consistent()
