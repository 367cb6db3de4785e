"""An admin ends a user's sessions: explicitly (`/admin/users/{id}/sessions/revoke-all`) and implicitly by
revoking a role, so a demoted admin does not keep admin access at auth nor refresh to a new token."""

from __future__ import annotations

import uuid

from auth_testkit import API, Auth, assert_problem, bearer


async def test_admin_revokes_all_sessions_of_a_user(auth: Auth) -> None:
    root, admin = await auth.admin()
    alice, alice_headers = await auth.user("alice")
    other_device = await auth.login("alice@example.com")
    bob, bob_headers = await auth.user("bob")
    uid = alice["user"]["id"]

    resp = await auth.client.post(f"{API}/admin/users/{uid}/sessions/revoke-all", headers=admin)
    assert resp.status_code == 200 and resp.json() == {"revoked": 2}
    assert_problem(await auth.client.get(f"{API}/me", headers=alice_headers), 401)
    for tokens in (alice, other_device):
        assert_problem(await auth.client.post(f"{API}/refresh", json={"refresh_token": tokens["refresh_token"]}), 401)
    assert (await auth.client.get(f"{API}/me", headers=bob_headers)).status_code == 200  # only alice's
    assert (await auth.client.get(f"{API}/me", headers=admin)).status_code == 200
    reasons = await auth.sql("SELECT DISTINCT revoked_reason FROM sessions WHERE user_id = :u", u=uuid.UUID(uid))
    assert [r.revoked_reason for r in reasons] == ["admin"]
    # Audited; a second call revokes nothing and is audited too. She can log in again.
    again = await auth.client.post(f"{API}/admin/users/{uid}/sessions/revoke-all", headers=admin)
    assert again.json() == {"revoked": 0}
    audit = [e.data for e in await auth.outbox() if e.type == "quark.auth.sessions_revoked"]
    assert audit == [{"user_id": uid, "reason": "admin", "actor_id": root["user"]["id"], "revoked": n,
                      "note": None} for n in (2, 0)]
    assert (await auth.login("alice"))["user"]["id"] == uid
    assert bob["user"]["id"] != uid


async def test_revoke_all_requires_admin_and_an_existing_user(auth: Auth) -> None:
    _, admin = await auth.admin()
    alice, alice_headers = await auth.user("alice")
    uid = alice["user"]["id"]
    before = await auth.outbox_types()
    assert_problem(await auth.client.post(f"{API}/admin/users/{uid}/sessions/revoke-all", headers=alice_headers), 403)
    assert_problem(await auth.client.post(f"{API}/admin/users/{uid}/sessions/revoke-all"), 401)
    assert_problem(await auth.client.post(f"{API}/admin/users/{uuid.uuid4()}/sessions/revoke-all", headers=admin),
                   404)
    assert_problem(await auth.client.post(f"{API}/admin/users/not-a-uuid/sessions/revoke-all", headers=admin), 422)
    assert await auth.outbox_types() == before
    assert (await auth.client.get(f"{API}/me", headers=alice_headers)).status_code == 200


async def test_a_demoted_admin_loses_admin_access_at_once(auth: Auth) -> None:
    root, admin = await auth.admin()
    second, second_headers = await auth.admin("root2")
    assert (await auth.client.get(f"{API}/admin/users", headers=second_headers)).status_code == 200

    resp = await auth.client.delete(f"{API}/admin/users/{second['user']['id']}/roles/admin", headers=admin)
    assert resp.status_code == 200 and resp.json()["roles"] == ["user"]
    # The old access token still says "admin", but its session is gone: auth refuses it, refresh fails.
    assert_problem(await auth.client.get(f"{API}/admin/users", headers=second_headers), 401)
    assert_problem(await auth.client.post(f"{API}/refresh", json={"refresh_token": second["refresh_token"]}), 401)
    fresh = await auth.login("root2")
    assert fresh["user"]["roles"] == ["user"]
    assert_problem(await auth.client.get(f"{API}/admin/users", headers=bearer(fresh["access_token"])), 403)
    audit = [e.data for e in await auth.outbox() if e.type == "quark.auth.sessions_revoked"]
    assert audit == [{"user_id": second["user"]["id"], "reason": "role_revoked", "actor_id": root["user"]["id"],
                      "revoked": 1, "note": None}]
    # Revoking a role not held changes nothing (idempotent, no events, sessions kept).
    before = await auth.outbox_types()
    again = await auth.client.delete(f"{API}/admin/users/{second['user']['id']}/roles/admin", headers=admin)
    assert again.status_code == 200 and await auth.outbox_types() == before
    assert (await auth.client.get(f"{API}/me", headers=bearer(fresh["access_token"]))).status_code == 200
