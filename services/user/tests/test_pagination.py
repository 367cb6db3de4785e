"""Keyset pagination: pages never shift when rows are added (or removed) while a client pages."""

from user_testkit import assert_problem, start

from quark_sdk.testing import QuarkTestEnv


async def test_followers_pages_are_stable_under_inserts_and_deletes(quark: QuarkTestEnv) -> None:
    h = await start(quark)
    star = await h.register("star")
    fans = await h.accounts(*(f"fan{i}" for i in range(7)))
    for fan in fans:
        assert (await h.post("/star/follow", fan)).status_code == 201
    newest_first = [f.username for f in reversed(fans)]

    first = (await h.get("/star/followers", params={"limit": 3})).json()
    assert [i["user"]["username"] for i in first["items"]] == newest_first[:3]
    assert first["next_cursor"]
    # While the client is between pages: four new followers, and one not-yet-seen follower leaves.
    late = await h.accounts(*(f"late{i}" for i in range(4)))
    for fan in late:
        await h.post("/star/follow", fan)
    await h.delete("/star/follow", fans[1])

    seen = [i["user"]["username"] for i in first["items"]]
    cursor = first["next_cursor"]
    while cursor:
        page = (await h.get("/star/followers", params={"limit": 3, "cursor": cursor})).json()
        seen += [i["user"]["username"] for i in page["items"]]
        cursor = page["next_cursor"]
    assert seen == [n for n in newest_first if n != "fan1"]  # no duplicates, nothing skipped, no late-comers
    # A fresh walk sees the new state, newest first.
    fresh = [i["user"]["username"] for i in await h.all_pages("/star/followers", limit=4)]
    assert fresh == [f"late{i}" for i in range(3, -1, -1)] + [n for n in newest_first if n != "fan1"]
    assert (await h.profile("star"))["followers_count"] == 10
    following = [i["user"]["username"] for i in await h.all_pages("/fan0/following", limit=1)]
    assert following == ["star"]
    # "me" names the caller.
    assert [i["user"]["username"] for i in await h.all_pages("/me/following", fans[0])] == ["star"]
    assert len(await h.all_pages("/me/followers", star, limit=5)) == 10
    assert star.username == "star"


async def test_page_size_and_cursor_are_validated(quark: QuarkTestEnv) -> None:
    h = await start(quark)
    alice = await h.register("alice")
    for params in ({"limit": 0}, {"limit": 101}, {"limit": 501}, {"limit": "ten"}, {"cursor": "not-a-cursor"},
                   {"cursor": "x" * 201}):
        assert_problem(await h.get("/alice/followers", params=params), 422)
    activity_cursor = None
    await h.patch("/me", alice, json={"bio": "one"})
    await h.patch("/me", alice, json={"bio": "two"})
    page = (await h.get("/me/activity", alice, params={"limit": 1})).json()
    activity_cursor = page["next_cursor"]
    assert activity_cursor
    # A cursor from one list is not accepted by another.
    assert_problem(await h.get("/alice/followers", params={"cursor": activity_cursor}), 422)
    # The station's one bound (quark_sdk.pagination.Limit): 1 to 100.
    assert (await h.get("/alice/followers", params={"limit": 100})).status_code == 200
