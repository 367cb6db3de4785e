"""Admin: list and filter accounts, suspend and reinstate them."""

from user_testkit import assert_problem, start

from quark_sdk.testing import QuarkTestEnv


async def test_admin_lists_and_filters_accounts(quark: QuarkTestEnv) -> None:
    h = await start(quark)
    alice, bob, carol = await h.accounts("alice", "bob", "carol")
    admin = await h.register("root", roles=("user", "admin"))
    await h.publish("quark.auth.user_verified", {"user_id": bob.id, "username": "bob"})
    await h.publish("quark.auth.role_changed", {"user_id": carol.id, "username": "carol", "role": "moderator",
                                                "action": "granted", "actor_id": admin.id})
    await h.consumed("auth")

    everyone = [u["username"] for u in await h.all_pages("/admin/users", admin, limit=2)]
    assert everyone == ["root", "carol", "bob", "alice"]  # newest first
    async def listed(**params: object) -> list[str]:
        resp = await h.get("/admin/users", admin, params=params)
        assert resp.status_code == 200, resp.text
        return [u["username"] for u in resp.json()["items"]]

    assert await listed(verified="true") == ["bob"]
    assert await listed(role="moderator") == ["carol"]
    assert await listed(role="admin") == ["root"]
    assert await listed(q="CA") == ["carol"]
    assert_problem(await h.get("/admin/users", alice), 403)
    assert_problem(await h.get("/admin/users"), 401)
    assert_problem(await h.get("/admin/users", admin, params={"suspended": "maybe"}), 422)


async def test_suspension_blocks_following_and_editing_until_lifted(quark: QuarkTestEnv) -> None:
    h = await start(quark)
    alice, bob = await h.accounts("alice", "bob")
    admin = await h.register("root", roles=("admin",))
    assert_problem(await h.post("/admin/users/bob/suspend", alice, json={"reason": "no"}), 403)

    resp = await h.post("/admin/users/bob/suspend", admin, json={"reason": "spam links"})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["suspended"] is True and body["suspended_reason"] == "spam links"
    assert body["suspended_by"] == admin.id and body["suspended_at"]
    [event] = await h.published("quark.user.suspended")
    assert event == {"user_id": bob.id, "suspended": True, "reason": "spam links", "actor_id": admin.id,
                     "_type": "quark.user.suspended"}
    assert (await h.profile("bob"))["suspended"] is True
    assert [u["username"] for u in (await h.get("/admin/users", admin, params={"suspended": "true"})).json()[
        "items"]] == ["bob"]

    before = await h.snapshot()
    assert_problem(await h.post("/alice/follow", bob), 403)
    assert_problem(await h.patch("/me", bob, json={"bio": "still here"}), 403)
    assert_problem(await h.post("/bob/follow", alice), 403)
    assert_problem(await h.post("/admin/users/bob/suspend", admin, json={}), 409)
    assert await h.snapshot() == before
    # Staying safe is still allowed: a suspended user may block and mute.
    assert (await h.post("/alice/block", bob)).status_code == 204
    assert (await h.delete("/alice/block", bob)).status_code == 204

    resp = await h.post("/admin/users/bob/unsuspend", admin)
    assert resp.status_code == 200 and resp.json()["suspended"] is False
    assert resp.json()["suspended_reason"] is None
    assert (await h.published("quark.user.suspended"))[-1] == {
        "user_id": bob.id, "suspended": False, "reason": None, "actor_id": admin.id, "_type": "quark.user.suspended"}
    assert_problem(await h.post("/admin/users/bob/unsuspend", admin), 409)
    assert (await h.post("/alice/follow", bob)).status_code == 201
    kinds = [a["kind"] for a in (await h.get("/me/activity", bob)).json()["items"]]
    assert "suspended" in kinds and "unsuspended" in kinds

    assert_problem(await h.post("/admin/users/root/suspend", admin), 422)  # not yourself
    assert_problem(await h.post("/admin/users/nobody/suspend", admin), 404)
    assert_problem(await h.post("/admin/users/alice/suspend", admin, json={"reason": "x" * 501}), 422)
