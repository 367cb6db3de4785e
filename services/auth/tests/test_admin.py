"""RBAC: `quark create-admin`, admin listing, granting and revoking roles (audited by events)."""

from __future__ import annotations

import io
import uuid
from typing import Any

import pytest
from auth_testkit import API, PASSWORD, Auth, assert_problem, bearer

from quark_auth.app import module
from quark_sdk.cli import build_parser


async def create_admin(auth: Auth, monkeypatch: pytest.MonkeyPatch, *argv: str,
                       password: str = PASSWORD) -> int:
    """Run `quark create-admin ...` as the CLI would: parsed by the real parser, password on stdin."""
    args = build_parser([module]).parse_args(["create-admin", *argv])
    _, command = args.module_command
    monkeypatch.setattr("sys.stdin", io.StringIO(password + "\n"))
    result: int = await command.run(args, auth.svc.ctx)
    return result


async def admin_headers(auth: Auth, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    assert await create_admin(auth, monkeypatch, "--username", "root", "--email", "root@example.com",
                              "--password-stdin") == 0
    return bearer((await auth.login("root"))["access_token"])


async def test_create_admin_command(auth: Auth, monkeypatch: pytest.MonkeyPatch,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    code = await create_admin(auth, monkeypatch, "--username", "root", "--email", "root@example.com",
                              "--password-stdin")
    assert code == 0 and "created admin root" in capsys.readouterr().out
    tokens = await auth.login("root")
    assert tokens["user"]["roles"] == ["admin", "user"] and tokens["user"]["email_verified"] is True
    assert "role:manage" in tokens["user"]["permissions"]
    events = [(e.type, e.data) for e in await auth.outbox()]
    assert events[0][0] == "quark.auth.user_registered" and events[0][1]["roles"] == ["admin", "user"]
    assert events[1] == ("quark.auth.role_changed", {"user_id": tokens["user"]["id"], "username": "root",
                                                     "role": "admin", "action": "granted", "actor_id": "cli",
                                                     "reason": None})

    # A second admin only with --force.
    refused = await create_admin(auth, monkeypatch, "--username", "root2", "--email", "r2@example.com",
                                 "--password-stdin")
    assert refused == 1 and "already exists" in capsys.readouterr().err
    forced = await create_admin(auth, monkeypatch, "--username", "root2", "--email", "r2@example.com",
                                "--password-stdin", "--force")
    assert forced == 0
    # Bad input is refused with a message and creates nothing.
    weak = await create_admin(auth, monkeypatch, "--username", "root3", "--email", "r3@example.com",
                              "--password-stdin", "--force", password="short")
    assert weak == 1 and "at least 10" in capsys.readouterr().err
    bad_name = await create_admin(auth, monkeypatch, "--username", "no spaces", "--email", "r3@example.com",
                                  "--password-stdin", "--force")
    assert bad_name == 1
    assert len(await auth.sql("SELECT id FROM users")) == 2


async def test_create_admin_needs_a_password_source(auth: Auth, monkeypatch: pytest.MonkeyPatch) -> None:
    args = build_parser([module]).parse_args(["create-admin", "--username", "root", "--email", "r@example.com"])
    monkeypatch.setattr("sys.stdin", io.StringIO(""))  # not a terminal: no prompt possible
    assert await args.module_command[1].run(args, auth.svc.ctx) == 2
    assert await auth.sql("SELECT id FROM users") == []


async def test_admin_endpoints_need_the_admin_role(auth: Auth) -> None:
    tokens, headers = await auth.user("alice")
    target = tokens["user"]["id"]
    assert_problem(await auth.client.get(f"{API}/admin/users", headers=headers), 403)
    assert_problem(await auth.client.post(f"{API}/admin/users/{target}/roles", json={"role": "admin"},
                                          headers=headers), 403)
    assert_problem(await auth.client.delete(f"{API}/admin/users/{target}/roles/user", headers=headers), 403)
    assert_problem(await auth.client.get(f"{API}/admin/users"), 401)
    assert (await auth.client.get(f"{API}/me", headers=headers)).json()["roles"] == ["user"]


async def test_grant_and_revoke_roles(auth: Auth, monkeypatch: pytest.MonkeyPatch) -> None:
    admin = await admin_headers(auth, monkeypatch)
    root_id = (await auth.client.get(f"{API}/me", headers=admin)).json()["id"]
    alice, alice_headers = await auth.user("alice")
    uid = alice["user"]["id"]

    granted = await auth.client.post(f"{API}/admin/users/{uid}/roles", json={"role": "moderator"}, headers=admin)
    assert granted.status_code == 200 and granted.json()["roles"] == ["moderator", "user"]
    assert "post:moderate" in granted.json()["permissions"]
    again = await auth.client.post(f"{API}/admin/users/{uid}/roles", json={"role": "moderator"}, headers=admin)
    assert again.status_code == 200  # idempotent, no second event
    # The next access token (after refresh) carries the new role.
    refreshed = (await auth.client.post(f"{API}/refresh", json={"refresh_token": alice["refresh_token"]})).json()
    assert refreshed["user"]["roles"] == ["moderator", "user"]

    revoked = await auth.client.delete(f"{API}/admin/users/{uid}/roles/moderator", headers=admin)
    assert revoked.status_code == 200 and revoked.json()["roles"] == ["user"]
    changes = [e.data for e in await auth.outbox() if e.type == "quark.auth.role_changed"][1:]
    assert changes == [
        {"user_id": uid, "username": "alice", "role": "moderator", "action": "granted", "actor_id": root_id,
         "reason": None},
        {"user_id": uid, "username": "alice", "role": "moderator", "action": "revoked", "actor_id": root_id,
         "reason": None},
    ]
    # Revoking a role ends the user's sessions: no more access here, no refresh to a new token anywhere.
    assert_problem(await auth.client.get(f"{API}/me", headers=alice_headers), 401)
    assert_problem(await auth.client.post(f"{API}/refresh", json={"refresh_token": refreshed["refresh_token"]}), 401)
    assert (await auth.login("alice"))["user"]["roles"] == ["user"]


async def test_role_change_bad_input(auth: Auth, monkeypatch: pytest.MonkeyPatch) -> None:
    admin = await admin_headers(auth, monkeypatch)
    root_id = (await auth.client.get(f"{API}/me", headers=admin)).json()["id"]
    alice, _ = await auth.user("alice")
    uid = alice["user"]["id"]
    before = await auth.outbox_types()
    cases: list[tuple[str, str, Any, int]] = [
        ("POST", f"/admin/users/{uid}/roles", {"role": "superuser"}, 422),
        ("POST", f"/admin/users/{uid}/roles", {"role": ""}, 422),
        ("POST", f"/admin/users/{uid}/roles", {"role": "x" * 100}, 422),
        ("POST", f"/admin/users/{uid}/roles", {}, 422),
        ("POST", f"/admin/users/{uuid.uuid4()}/roles", {"role": "moderator"}, 404),
        ("POST", "/admin/users/not-a-uuid/roles", {"role": "moderator"}, 422),
        ("DELETE", f"/admin/users/{uid}/roles/user", None, 422),
        ("DELETE", f"/admin/users/{uid}/roles/superuser", None, 422),
        ("DELETE", f"/admin/users/{uid}/roles/{'x' * 100}", None, 422),
        ("DELETE", f"/admin/users/{root_id}/roles/admin", None, 409),  # the last admin
        ("DELETE", f"/admin/users/{uuid.uuid4()}/roles/admin", None, 404),
    ]
    for method, path, body, status in cases:
        resp = await auth.client.request(method, API + path, json=body, headers=admin)
        assert_problem(resp, status)
    assert await auth.outbox_types() == before
    # With a second admin, the first may step down.
    await auth.client.post(f"{API}/admin/users/{uid}/roles", json={"role": "admin"}, headers=admin)
    assert (await auth.client.delete(f"{API}/admin/users/{root_id}/roles/admin", headers=admin)).status_code == 200


async def test_last_admin_cannot_delete_their_account(auth: Auth, monkeypatch: pytest.MonkeyPatch) -> None:
    admin = await admin_headers(auth, monkeypatch)
    resp = await auth.client.request("DELETE", f"{API}/me", json={"password": PASSWORD}, headers=admin)
    assert_problem(resp, 409)
    assert len(await auth.sql("SELECT id FROM users")) == 1


async def test_list_users_paginates_and_searches(auth: Auth, monkeypatch: pytest.MonkeyPatch) -> None:
    admin = await admin_headers(auth, monkeypatch)
    for name in ("alice", "albert", "bob", "carol"):
        await auth.register(name)
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = (await auth.client.get(f"{API}/admin/users", params=params, headers=admin)).json()
        seen += [u["username"] for u in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == ["root", "alice", "albert", "bob", "carol"]
    found = (await auth.client.get(f"{API}/admin/users", params={"q": "AL"}, headers=admin)).json()
    assert [u["username"] for u in found["items"]] == ["alice", "albert"]
    assert (await auth.client.get(f"{API}/admin/users", params={"q": "%"}, headers=admin)).json()["items"] == []
    one = await auth.client.get(f"{API}/admin/users/{found['items'][0]['id']}", headers=admin)
    assert one.json()["email"] == "alice@example.com"
    assert_problem(await auth.client.get(f"{API}/admin/users", params={"cursor": "!!"}, headers=admin), 422)
    assert_problem(await auth.client.get(f"{API}/admin/users", params={"limit": 0}, headers=admin), 422)
