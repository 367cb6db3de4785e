"""What the console's user administration needs from auth: the operator role (outside the admin chain), the
account detail (sessions, last login, 2FA, forced reset), reasons in the audit events, and forcing a
password reset (password dead, sessions ended, reset mailed through email_requested, audited)."""

from __future__ import annotations

import uuid

from auth_testkit import API, PASSWORD, Auth, assert_problem

from quark_auth import rbac


def test_operator_is_a_role_of_its_own() -> None:
    assert "operator" in rbac.ROLES
    assert "fleet:read" not in rbac.PERMISSIONS["admin"]  # an admin is not an operator by default
    assert rbac.permissions_for(["operator"]) == ["fleet:operate", "fleet:read"]  # nor an operator an admin
    assert set(rbac.permissions_for(["admin", "operator"])) == rbac.PERMISSIONS["admin"] | {"fleet:read",
                                                                                           "fleet:operate"}


async def test_granting_operator_with_a_reason_is_audited(auth: Auth) -> None:
    root, admin = await auth.admin()
    alice, _ = await auth.user("alice")
    uid = alice["user"]["id"]
    resp = await auth.client.post(f"{API}/admin/users/{uid}/roles", json={"role": "operator", "reason": "on call"},
                                  headers=admin)
    assert resp.status_code == 200 and resp.json()["roles"] == ["operator", "user"]
    assert resp.json()["permissions"] == sorted({*rbac.PERMISSIONS["user"], "fleet:read", "fleet:operate"})
    tokens = await auth.login("alice")
    assert tokens["user"]["roles"] == ["operator", "user"]
    revoked = await auth.client.delete(f"{API}/admin/users/{uid}/roles/operator?reason=rotation", headers=admin)
    assert revoked.status_code == 200 and revoked.json()["roles"] == ["user"]
    changes = [e.data for e in await auth.outbox() if e.type == "quark.auth.role_changed"][1:]
    assert [(c["role"], c["action"], c["actor_id"], c["reason"]) for c in changes] == [
        ("operator", "granted", root["user"]["id"], "on call"), ("operator", "revoked", root["user"]["id"], "rotation")]
    ended = [e.data for e in await auth.outbox() if e.type == "quark.auth.sessions_revoked"]
    assert ended[-1]["reason"] == "role_revoked" and ended[-1]["note"] == "rotation"
    assert_problem(await auth.client.post(f"{API}/admin/users/{uid}/roles", json={"role": "root"}, headers=admin), 422)


async def test_account_detail_shows_sessions_last_login_and_2fa(auth: Auth) -> None:
    _, admin = await auth.admin()
    alice, _ = await auth.user("alice")
    await auth.login("alice@example.com")
    uid = alice["user"]["id"]
    resp = await auth.client.get(f"{API}/admin/users/{uid}", headers=admin)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["username"] == "alice" and body["mfa_enabled"] is False and body["suspended"] is False
    assert body["active_sessions"] == 2 and len(body["sessions"]) == 2
    assert body["last_login_at"] == max(s["created_at"] for s in body["sessions"])
    assert body["password_reset_required"] is False and body["role_grants"] == {"user": None}
    assert all("token" not in key for s in body["sessions"] for key in s)
    never = await auth.register("bob")
    assert (await auth.client.get(f"{API}/admin/users/{never['id']}", headers=admin)).json()["last_login_at"] is None
    # Search by name prefix (the console's search box).
    found = (await auth.client.get(f"{API}/admin/users?q=ali", headers=admin)).json()["items"]
    assert [u["username"] for u in found] == ["alice"]


async def test_forced_password_reset(auth: Auth) -> None:
    root, admin = await auth.admin()
    alice, alice_headers = await auth.user("alice")
    uid = alice["user"]["id"]
    resp = await auth.client.post(f"{API}/admin/users/{uid}/password-reset", json={"reason": "leaked password"},
                                  headers=admin)
    assert resp.status_code == 200 and resp.json() == {"revoked": 1}
    # The password no longer works, the session is over (access and refresh), the detail says so.
    login = await auth.client.post(f"{API}/login", json={"login": "alice", "password": PASSWORD})
    assert_problem(login, 401)
    assert_problem(await auth.client.get(f"{API}/me", headers=alice_headers), 401)
    assert_problem(await auth.client.post(f"{API}/refresh", json={"refresh_token": alice["refresh_token"]}), 401)
    detail = (await auth.client.get(f"{API}/admin/users/{uid}", headers=admin)).json()
    assert detail["password_reset_required"] is True and detail["active_sessions"] == 0
    assert detail["sessions"][0]["revoked_reason"] == "password_reset_forced"
    # Audited with actor and reason; the reset mail goes out through the usual path.
    forced = [e.data for e in await auth.outbox() if e.type == "quark.auth.password_reset_forced"]
    assert forced == [{"user_id": uid, "username": "alice", "actor_id": root["user"]["id"],
                       "reason": "leaked password", "revoked": 1}]
    mails = await auth.emails("reset_password")
    assert len(mails) == 1 and mails[0]["user_id"] == uid
    # The owner sets a new password from the link and signs in with it.
    new_password = "a brand new passphrase"
    done = await auth.client.post(f"{API}/password-reset/confirm",
                                  json={"token": mails[0]["token"], "new_password": new_password})
    assert done.status_code == 204, done.text
    tokens = await auth.login("alice", new_password)
    assert tokens["user"]["id"] == uid
    after = (await auth.client.get(f"{API}/admin/users/{uid}", headers=admin)).json()
    assert after["password_reset_required"] is False


async def test_forced_reset_refuses_bad_callers_and_changes_nothing(auth: Auth) -> None:
    root, admin = await auth.admin()
    alice, alice_headers = await auth.user("alice")
    uid = alice["user"]["id"]
    before = await auth.outbox_types()
    assert_problem(await auth.client.post(f"{API}/admin/users/{uid}/password-reset", headers=alice_headers), 403)
    assert_problem(await auth.client.post(f"{API}/admin/users/{uid}/password-reset"), 401)
    assert_problem(await auth.client.post(f"{API}/admin/users/{uuid.uuid4()}/password-reset", headers=admin), 404)
    assert_problem(await auth.client.post(f"{API}/admin/users/{uid}/password-reset", json={"reason": "x" * 501},
                                          headers=admin), 422)
    assert_problem(await auth.client.post(f"{API}/admin/users/{root['user']['id']}/password-reset", headers=admin),
                   422)
    assert await auth.outbox_types() == before
    assert (await auth.client.get(f"{API}/me", headers=alice_headers)).status_code == 200
    assert (await auth.login("alice"))["user"]["id"] == uid
