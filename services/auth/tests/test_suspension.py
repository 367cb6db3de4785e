"""Suspension, decided by the user service (`quark.user.suspended`), enforced by auth: no login, no refresh,
sessions revoked. Events arrive over real NATS JetStream and are consumed by auth's durable consumer."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from auth_testkit import API, PASSWORD, Auth, assert_problem, bearer

from quark_user.schemas import UserSuspended  # the producer's own model: the payload contract


def suspended(user_id: str, value: bool = True, actor_id: str = "admin-1") -> dict[str, Any]:
    payload = UserSuspended(user_id=user_id, suspended=value, reason="spam" if value else None, actor_id=actor_id)
    return payload.model_dump(mode="json")


def assert_suspended(resp: Any) -> None:
    body = assert_problem(resp, 403)
    assert body["type"].endswith("/account-suspended") and "suspended" in body["detail"], body


async def test_suspension_refuses_login_and_refresh_and_revokes_sessions(auth: Auth) -> None:
    tokens, headers = await auth.user("alice")
    second = await auth.login("alice@example.com")
    await auth.user("bob")
    user_id = tokens["user"]["id"]

    await auth.publish("quark.user.suspended", suspended(user_id))
    await auth.consumed()

    assert_suspended(await auth.client.post(f"{API}/login", json={"login": "alice", "password": PASSWORD}))
    assert_suspended(await auth.client.post(f"{API}/refresh", json={"refresh_token": second["refresh_token"]}))
    assert_suspended(await auth.client.get(f"{API}/me", headers=headers))
    # Without the password nothing about the account is revealed.
    wrong = assert_problem(await auth.client.post(f"{API}/login", json={"login": "alice", "password": "x" * 12}), 401)
    assert wrong["type"].endswith("/invalid-credentials")
    sessions = await auth.sql("SELECT revoked_reason FROM sessions s JOIN users u ON u.id = s.user_id "
                              "WHERE u.username = 'alice'")
    assert [r.revoked_reason for r in sessions] == ["suspended", "suspended"]
    assert (await auth.login("bob"))["user"]["suspended"] is False  # others are untouched
    revoked = [e.data for e in await auth.outbox() if e.type == "quark.auth.sessions_revoked"]
    assert revoked == [{"user_id": user_id, "reason": "suspended", "actor_id": "admin-1", "revoked": 2,
                        "note": None}]
    _, admin = await auth.admin()
    seen = (await auth.client.get(f"{API}/admin/users/{user_id}", headers=admin)).json()
    assert seen["suspended"] is True

    # Reinstated: login works again (the old sessions stay revoked).
    await auth.publish("quark.user.suspended", suspended(user_id, False))
    await auth.consumed()
    again = await auth.login("alice")
    assert again["user"]["suspended"] is False
    assert_problem(await auth.client.post(f"{API}/refresh", json={"refresh_token": second["refresh_token"]}), 401)
    assert (await auth.client.get(f"{API}/me", headers=bearer(again["access_token"]))).status_code == 200


async def test_suspension_during_the_mfa_step_refuses_the_second_step(auth: Auth) -> None:
    import pyotp

    tokens, headers = await auth.user("alice")
    secret = (await auth.client.post(f"{API}/2fa/setup", headers=headers)).json()["secret"]
    confirm = await auth.client.post(f"{API}/2fa/confirm", json={"code": pyotp.TOTP(secret).now()}, headers=headers)
    assert confirm.status_code == 200, confirm.text
    challenge = (await auth.client.post(f"{API}/login", json={"login": "alice", "password": PASSWORD})).json()
    await auth.publish("quark.user.suspended", suspended(tokens["user"]["id"]))
    await auth.consumed()
    auth.rt.set_clock(lambda: datetime.now(UTC).timestamp() + 31)  # the next TOTP step: not a replay
    code = pyotp.TOTP(secret).at(datetime.now(UTC) + timedelta(seconds=31))
    assert_suspended(await auth.client.post(f"{API}/login/mfa", json={"mfa_token": challenge["mfa_token"],
                                                                      "code": code}))


async def test_a_late_older_event_does_not_undo_a_newer_one(auth: Auth) -> None:
    tokens, _ = await auth.user("alice")
    user_id = tokens["user"]["id"]
    now = datetime.now(UTC)
    await auth.publish("quark.user.suspended", suspended(user_id), at=now)
    await auth.publish("quark.user.suspended", suspended(user_id, False), at=now - timedelta(seconds=10))
    await auth.consumed()
    assert_suspended(await auth.client.post(f"{API}/login", json={"login": "alice", "password": PASSWORD}))


async def test_bad_payloads_are_dead_lettered_and_unknown_users_ignored(auth: Auth) -> None:
    tokens, _ = await auth.user("alice")
    await auth.publish("quark.user.suspended", {"user_id": "not-a-uuid", "suspended": True})
    await auth.publish("quark.user.suspended", {"user_id": tokens["user"]["id"]})  # no `suspended`
    await auth.publish("quark.user.suspended", suspended("7a1f6f0e-58a4-4c1e-9f0e-3d3f8f6c2b11"))  # no such user
    await auth.publish("quark.user.suspended", suspended(tokens["user"]["id"]))
    await auth.consumed()
    assert await auth.dead_letters() == 2
    assert_suspended(await auth.client.post(f"{API}/login", json={"login": "alice", "password": PASSWORD}))
    assert [r.username for r in await auth.sql("SELECT username FROM users WHERE suspended_at IS NOT NULL")] == [
        "alice"]
