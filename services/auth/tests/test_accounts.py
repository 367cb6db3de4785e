"""Accounts: register, login, me, logout, password change, email verification, password reset, deletion."""

from __future__ import annotations

import statistics
import time
import uuid
from typing import Any

import pytest
from auth_testkit import API, PASSWORD, Auth, assert_problem, bearer


async def test_register_login_me_and_events(auth: Auth) -> None:
    user = await auth.register("Alice", display_name="Alice A.")
    assert user["username"] == "Alice" and user["email"] == "Alice@example.com"
    assert user["roles"] == ["user"] and "post:create" in user["permissions"]
    assert user["email_verified"] is False and user["mfa_enabled"] is False

    tokens = await auth.login("alice")  # case-insensitive username
    assert tokens["token_type"] == "Bearer" and tokens["expires_in"] == 900
    assert tokens["refresh_expires_in"] == 7 * 86400
    me = await auth.client.get(f"{API}/me", headers=bearer(tokens["access_token"]))
    assert me.status_code == 200 and me.json()["id"] == user["id"]

    by_email = await auth.login("ALICE@example.com")  # login by email, case-insensitive
    assert by_email["user"]["id"] == user["id"]

    assert await auth.outbox_types() == ["quark.auth.user_registered", "quark.auth.email_requested",
                                         "quark.auth.user_logged_in", "quark.auth.user_logged_in"]
    registered = (await auth.outbox())[0].data
    assert registered == {"user_id": user["id"], "username": "Alice", "email": "Alice@example.com",
                          "display_name": "Alice A.", "roles": ["user"], "created_at": registered["created_at"]}
    logged_in = (await auth.outbox())[2].data
    assert logged_in["user_id"] == user["id"] and logged_in["ip"] == "127.0.0.1"
    assert logged_in["user_agent"].startswith("python-httpx")


async def test_events_reach_the_stream(auth: Auth) -> None:
    await auth.user("bob")
    events = await auth.published(3)
    assert [e.type for e in events] == ["quark.auth.user_registered", "quark.auth.email_requested",
                                        "quark.auth.user_logged_in"]
    assert all(e.source == "quark/auth" for e in events)


async def test_duplicates_are_refused_case_insensitively(auth: Auth) -> None:
    await auth.register("alice")
    before = await auth.outbox_types()
    dup_name = await auth.client.post(f"{API}/register", json={
        "username": "ALICE", "email": "other@example.com", "password": PASSWORD})
    assert "username" in assert_problem(dup_name, 409)["detail"]  # usernames are public anyway
    assert await auth.outbox_types() == before
    # A taken email is not revealed (test_register_does_not_reveal_a_registered_email); nothing is stored.
    dup_mail = await auth.client.post(f"{API}/register", json={
        "username": "other", "email": "Alice@Example.com", "password": PASSWORD})
    assert dup_mail.status_code == 201
    assert len(await auth.sql("SELECT id FROM users")) == 1


async def test_register_does_not_reveal_a_registered_email(auth: Auth) -> None:
    """Issue 16 item 9: registering with an address that has an account answers exactly like a new account
    (201, the same body) and mails the owner instead; nothing is stored."""
    await auth.register("alice")
    fresh = await auth.client.post(f"{API}/register", json={
        "username": "carol", "email": "carol@example.com", "password": PASSWORD, "display_name": "C"})
    taken = await auth.client.post(f"{API}/register", json={
        "username": "mallory", "email": "ALICE@example.com", "password": PASSWORD, "display_name": "C"})
    assert fresh.status_code == taken.status_code == 201
    assert fresh.headers["content-type"] == taken.headers["content-type"]
    a, b = fresh.json(), taken.json()
    assert a.keys() == b.keys() and "already" not in taken.text
    same = {k: v for k, v in a.items() if k not in ("id", "username", "email", "created_at")}
    assert same == {k: v for k, v in b.items() if k not in ("id", "username", "email", "created_at")}
    assert b["username"] == "mallory" and b["email"] == "ALICE@example.com"
    assert [r.username for r in await auth.sql("SELECT username FROM users ORDER BY username")] == ["alice", "carol"]
    registered = [e.data["username"] for e in await auth.outbox() if e.type == "quark.auth.user_registered"]
    assert registered == ["alice", "carol"]
    # The owner is told, with a link that resets the password (if it was them, they can get in).
    [mail] = await auth.emails("account_exists")
    assert mail["email"] == "alice@example.com" and mail["username"] == "alice"
    assert "/reset-password?token=" in mail["link"]
    reset = await auth.client.post(f"{API}/password-reset/confirm", json={"token": mail["token"],
                                                                           "new_password": "a fresh passphrase"})
    assert reset.status_code == 204
    await auth.login("alice", "a fresh passphrase")


async def test_a_username_tried_with_a_taken_email_looks_taken(auth: Auth) -> None:
    """Nothing is stored for a registration with a taken email, yet its username must then answer like a
    taken one: a free username would tell that the first attempt created nothing, i.e. that the email
    already had an account. Held for a day (`username_hold_seconds`), in Valkey."""
    await auth.register("alice")
    taken = await auth.client.post(f"{API}/register", json={
        "username": "mallory", "email": "alice@example.com", "password": PASSWORD})
    assert taken.status_code == 201
    fresh = await auth.client.post(f"{API}/register", json={
        "username": "carol", "email": "carol@example.com", "password": PASSWORD})
    assert fresh.status_code == 201
    for username in ("mallory", "MALLORY", "carol"):  # held exactly like one that exists
        again = await auth.client.post(f"{API}/register", json={
            "username": username, "email": f"{uuid.uuid4().hex[:8]}@example.com", "password": PASSWORD})
        assert again.status_code == 409, again.text
        assert again.json()["detail"] == "username is already taken"
        assert again.headers["content-type"] == "application/problem+json"
    assert [r.username for r in await auth.sql("SELECT username FROM users ORDER BY username")] == ["alice", "carol"]


async def test_password_reset_timing_does_not_reveal_accounts(start_auth: Any) -> None:
    """Issue 16 item 9: the median answer time of a reset request is the same for an address with an
    account and one without (~30 requests each, interleaved), and so is the answer."""
    auth: Auth = await start_auth(email_request_limit=10_000)  # every request to the account does the full work
    await auth.register("kate")

    async def timed(email: str) -> tuple[float, int, bytes]:
        started = time.perf_counter()
        resp = await auth.client.post(f"{API}/password-reset/request", json={"email": email})
        return time.perf_counter() - started, resp.status_code, resp.content

    existing, unknown = [], []
    for i in range(30):
        existing.append(await timed("kate@example.com"))
        unknown.append(await timed(f"nobody{i}@example.com"))
    assert {(status, body) for _, status, body in existing + unknown} == {(202, b'{"status":"accepted"}')}
    ratio = statistics.median(t for t, _, _ in existing) / statistics.median(t for t, _, _ in unknown)
    assert 0.8 <= ratio <= 1.25, ratio
    assert len(await auth.emails("reset_password")) == 30


@pytest.mark.parametrize(("body", "field"), [
    ({"username": "a", "email": "a@example.com", "password": PASSWORD}, "username"),
    ({"username": "x" * 33, "email": "a@example.com", "password": PASSWORD}, "username"),
    ({"username": "bad name", "email": "a@example.com", "password": PASSWORD}, "username"),
    ({"username": "-dash", "email": "a@example.com", "password": PASSWORD}, "username"),
    ({"username": "alice", "email": "not-an-email", "password": PASSWORD}, "email"),
    ({"username": "alice", "email": "a@", "password": PASSWORD}, "email"),
    ({"username": "alice", "email": "a" * 250 + "@example.com", "password": PASSWORD}, "email"),
    ({"username": "alice", "email": "a@example.com", "password": "short"}, "password"),
    ({"username": "alice", "email": "a@example.com", "password": "a" * 12}, "password"),
    ({"username": "alicealice", "email": "a@example.com", "password": "AliceAlice"}, "password"),
    ({"username": "alice", "email": "a@example.com", "password": "1234567890"}, "password"),
    ({"username": "alice", "email": "a@example.com", "password": "é" * 65}, "password"),  # 130 bytes
    ({"username": "alice", "email": "a@example.com", "password": "p" * 100_000}, "password"),
    ({"username": "alice", "email": "a@example.com", "password": PASSWORD, "display_name": "x" * 65},
     "display_name"),
    ({"username": "alice", "email": "a@example.com", "password": PASSWORD, "display_name": "a\u202eb"},
     "display_name"),
    ({"username": "alice", "email": "a@example.com", "password": PASSWORD, "roles": ["admin"]}, "roles"),
    ({"username": "alice", "email": "a@example.com"}, "password"),
    ({"username": 5, "email": "a@example.com", "password": PASSWORD}, "username"),
])
async def test_bad_registrations_are_422_and_change_nothing(auth: Auth, body: dict[str, Any], field: str) -> None:
    resp = await auth.client.post(f"{API}/register", json=body)
    problem = assert_problem(resp, 422)
    assert any(e["field"].startswith(field) for e in problem["errors"]), problem
    assert await auth.sql("SELECT id FROM users") == []
    assert await auth.outbox() == []


async def test_policy_messages_are_clear(auth: Auth) -> None:
    resp = await auth.client.post(f"{API}/register", json={
        "username": "carol", "email": "carol@example.com", "password": "carol@example.com"})
    assert assert_problem(resp, 422)["detail"] == "password must not be your email address"
    resp = await auth.client.post(f"{API}/register", json={
        "username": "carol", "email": "carol@example.com", "password": "short"})
    assert assert_problem(resp, 422)["detail"] == "password must be at least 10 characters long"


async def test_long_passwords_use_all_their_bytes(auth: Auth) -> None:
    """bcrypt alone would ignore bytes after 72; the pre-hash makes every byte count (up to 128)."""
    long_pw = "p" * 80 + "-tail-A"
    await auth.register("dave", password=long_pw)
    await auth.login("dave", long_pw)
    wrong = await auth.client.post(f"{API}/login", json={"login": "dave", "password": "p" * 80 + "-tail-B"})
    assert_problem(wrong, 401)


async def test_wrong_password_and_unknown_user_look_the_same_and_both_hash(auth: Auth) -> None:
    await auth.register("erin")
    hasher = auth.rt.hasher
    before = hasher.checks
    wrong = await auth.client.post(f"{API}/login", json={"login": "erin", "password": "not the password"})
    assert hasher.checks == before + 1
    unknown = await auth.client.post(f"{API}/login", json={"login": "nobody", "password": "not the password"})
    assert hasher.checks == before + 2  # the unknown account still costs one bcrypt check (dummy hash)
    unknown_mail = await auth.client.post(f"{API}/login", json={"login": "no@example.com", "password": "x" * 12})
    assert hasher.checks == before + 3
    for resp in (wrong, unknown, unknown_mail):
        assert assert_problem(resp, 401)["detail"] == "invalid username/email or password"


async def test_bad_login_input(auth: Auth) -> None:
    for body in ({}, {"login": "", "password": "x"}, {"login": "a", "password": ""},
                 {"login": "x" * 300, "password": "y"}, {"login": "a", "password": "p" * 1000},
                 {"login": ["a"], "password": "y"}):
        assert_problem(await auth.client.post(f"{API}/login", json=body), 422)
    assert_problem(await auth.client.post(f"{API}/login", content=b"{not json",
                                          headers={"content-type": "application/json"}), 422)


async def test_me_requires_a_valid_token(auth: Auth) -> None:
    assert_problem(await auth.client.get(f"{API}/me"), 401)
    assert_problem(await auth.client.get(f"{API}/me", headers={"Authorization": "Basic abc"}), 401)
    assert_problem(await auth.client.get(f"{API}/me", headers=bearer("not.a.jwt")), 401)
    # A token from another issuer's keys (the test env's) is not an auth-service token.
    assert_problem(await auth.client.get(f"{API}/me", headers=bearer(auth.quark.user_token())), 401)


async def test_logout_revokes_the_session(auth: Auth) -> None:
    tokens, headers = await auth.user("frank")
    resp = await auth.client.post(f"{API}/logout", headers=headers)
    assert resp.status_code == 204
    assert_problem(await auth.client.get(f"{API}/me", headers=headers), 401)
    assert_problem(await auth.client.post(f"{API}/refresh", json={"refresh_token": tokens["refresh_token"]}), 401)


async def test_logout_with_only_the_refresh_token(auth: Auth) -> None:
    tokens, headers = await auth.user("gina")
    resp = await auth.client.post(f"{API}/logout", json={"refresh_token": tokens["refresh_token"]})
    assert resp.status_code == 204
    assert_problem(await auth.client.get(f"{API}/me", headers=headers), 401)
    assert_problem(await auth.client.post(f"{API}/logout"), 401)


async def test_change_password(auth: Auth) -> None:
    tokens, headers = await auth.user("hank")
    other = await auth.login("hank")  # a second device
    new = "a much better passphrase"
    wrong = await auth.client.post(f"{API}/password", json={"current_password": "wrong password!",
                                                            "new_password": new}, headers=headers)
    assert_problem(wrong, 403)
    weak = await auth.client.post(f"{API}/password", json={"current_password": PASSWORD,
                                                           "new_password": "hank"}, headers=headers)
    assert_problem(weak, 422)
    same = await auth.client.post(f"{API}/password", json={"current_password": PASSWORD,
                                                           "new_password": PASSWORD}, headers=headers)
    assert_problem(same, 422)
    assert "quark.auth.password_changed" not in await auth.outbox_types()

    ok = await auth.client.post(f"{API}/password", json={"current_password": PASSWORD, "new_password": new},
                                headers=headers)
    assert ok.status_code == 204
    assert (await auth.client.get(f"{API}/me", headers=headers)).status_code == 200  # this session survives
    assert_problem(await auth.client.get(f"{API}/me", headers=bearer(other["access_token"])), 401)
    assert_problem(await auth.client.post(f"{API}/login", json={"login": "hank", "password": PASSWORD}), 401)
    await auth.login("hank", new)
    changed = [e.data for e in await auth.outbox() if e.type == "quark.auth.password_changed"]
    assert changed == [{"user_id": tokens["user"]["id"], "reason": "changed"}]


async def test_email_verification(auth: Auth) -> None:
    tokens, headers = await auth.user("ivy")
    [first] = await auth.emails("verify_email")
    assert first["email"] == "ivy@example.com" and first["token"] in first["link"]

    again = await auth.client.post(f"{API}/verify-email/request", headers=headers)
    assert again.status_code == 202
    second = (await auth.emails("verify_email"))[-1]
    # Requesting again replaces the earlier token.
    stale = await auth.client.post(f"{API}/verify-email/confirm", json={"token": first["token"]})
    assert_problem(stale, 400)

    ok = await auth.client.post(f"{API}/verify-email/confirm", json={"token": second["token"]})
    assert ok.status_code == 204
    me = (await auth.client.get(f"{API}/me", headers=headers)).json()
    assert me["email_verified"] is True
    reused = await auth.client.post(f"{API}/verify-email/confirm", json={"token": second["token"]})
    assert_problem(reused, 400)
    assert_problem(await auth.client.post(f"{API}/verify-email/request", headers=headers), 409)
    verified = [e.data for e in await auth.outbox() if e.type == "quark.auth.user_verified"]
    assert verified == [{"user_id": tokens["user"]["id"], "username": "ivy"}]


async def test_verification_token_expires(auth: Auth) -> None:
    from auth_testkit import FakeClock

    await auth.user("jack")
    [email] = await auth.emails("verify_email")
    clock = FakeClock(auth.rt.clock())
    auth.rt.set_clock(clock)
    clock.advance(auth.rt.settings.verify_email_ttl + 1)
    assert_problem(await auth.client.post(f"{API}/verify-email/confirm", json={"token": email["token"]}), 400)


async def test_unknown_and_malformed_tokens(auth: Auth) -> None:
    for path in ("verify-email/confirm", "password-reset/confirm"):
        body: dict[str, Any] = {"token": "x" * 43}
        if path.startswith("password"):
            body["new_password"] = "a fine new password"
        assert_problem(await auth.client.post(f"{API}/{path}", json=body), 400)
        assert_problem(await auth.client.post(f"{API}/{path}", json={**body, "token": "short"}), 422)
        assert_problem(await auth.client.post(f"{API}/{path}", json={**body, "token": "t" * 500}), 422)


async def test_password_reset(auth: Auth) -> None:
    tokens, headers = await auth.user("kate")
    # Unknown address: same answer, nothing sent.
    unknown = await auth.client.post(f"{API}/password-reset/request", json={"email": "nobody@example.com"})
    assert unknown.status_code == 202 and unknown.json() == {"status": "accepted"}
    assert await auth.emails("reset_password") == []

    known = await auth.client.post(f"{API}/password-reset/request", json={"email": "KATE@example.com"})
    assert known.status_code == 202 and known.json() == unknown.json()
    [email] = await auth.emails("reset_password")

    weak = await auth.client.post(f"{API}/password-reset/confirm", json={"token": email["token"],
                                                                         "new_password": "kate"})
    assert_problem(weak, 422)  # the token is still good after a refused password
    new = "brand new secret words"
    ok = await auth.client.post(f"{API}/password-reset/confirm", json={"token": email["token"], "new_password": new})
    assert ok.status_code == 204
    again = await auth.client.post(f"{API}/password-reset/confirm", json={"token": email["token"],
                                                                          "new_password": "another new one!"})
    assert_problem(again, 400)  # single use
    assert_problem(await auth.client.get(f"{API}/me", headers=headers), 401)  # all sessions revoked
    assert_problem(await auth.client.post(f"{API}/refresh", json={"refresh_token": tokens["refresh_token"]}), 401)
    relogged = await auth.login("kate", new)
    assert relogged["user"]["email_verified"] is True  # the link proved the address
    types = await auth.outbox_types()
    assert "quark.auth.password_changed" in types and "quark.auth.user_verified" in types


async def test_password_reset_bad_input(auth: Auth) -> None:
    assert_problem(await auth.client.post(f"{API}/password-reset/request", json={"email": "nope"}), 422)
    assert_problem(await auth.client.post(f"{API}/password-reset/request", json={}), 422)


async def test_delete_account(auth: Auth) -> None:
    tokens, headers = await auth.user("liam")
    wrong = await auth.client.request("DELETE", f"{API}/me", json={"password": "not my password"}, headers=headers)
    assert_problem(wrong, 403)
    ok = await auth.client.request("DELETE", f"{API}/me", json={"password": PASSWORD}, headers=headers)
    assert ok.status_code == 204
    assert_problem(await auth.client.get(f"{API}/me", headers=headers), 401)
    assert await auth.sql("SELECT id FROM users") == []
    assert await auth.sql("SELECT id FROM sessions") == []
    deleted = [e.data for e in await auth.outbox() if e.type == "quark.auth.user_deleted"]
    assert deleted == [{"user_id": tokens["user"]["id"], "username": "liam"}]
    await auth.register("liam")  # the name is free again


async def test_email_is_logged_in_dev(start_auth: Any, caplog: pytest.LogCaptureFixture) -> None:
    auth: Auth = await start_auth(env="dev", log_level="INFO")
    with caplog.at_level("INFO", logger="quark.auth.mail"):
        await auth.register("mona")
    [email] = await auth.emails("verify_email")
    lines = [r.getMessage() for r in caplog.records if r.name == "quark.auth.mail"]
    assert len(lines) == 1 and email["link"] in lines[0]


async def test_no_secrets_in_logs(auth: Auth, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("DEBUG"):
        tokens, _headers = await auth.user("nina")
        await auth.client.post(f"{API}/login", json={"login": "nina", "password": "wrong password"})
        await auth.client.post(f"{API}/refresh", json={"refresh_token": tokens["refresh_token"]})
        await auth.client.post(f"{API}/refresh", json={"refresh_token": tokens["refresh_token"]})  # reuse: warns
    text = "\n".join(r.getMessage() for r in caplog.records)
    for secret in (PASSWORD, "wrong password", tokens["refresh_token"], tokens["access_token"]):
        assert secret not in text
