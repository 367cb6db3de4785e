"""Phone numbers: registration by phone with the SMS code, phone + password and phone + code sign-in, attaching,
changing and removing a phone, SMS as second factor; code expiry, attempts and single use; send limits with
back-off; enumeration safety. The SMS is the outbox event `quark.auth.sms_requested` (the mailer sends it)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pytest
from auth_testkit import API, PASSWORD, Auth, FakeClock, bearer, problem

PHONE = "+447911123456"
OTHER = "+447911123457"
# Limits that do not get in the way; tests of a limit set their own.
OPEN = {"sms_backoff_base": 0, "sms_number_limit": 1000, "sms_ip_limit": 1000, "sms_account_limit": 1000}


@pytest.fixture
async def auth(start_auth: Callable[..., Any]) -> Auth:
    result: Auth = await start_auth(**OPEN)
    return result


async def sms(auth: Auth, phone: str | None = None, kind: str | None = None) -> list[dict[str, Any]]:
    return [e.data for e in await auth.outbox() if e.type == "quark.auth.sms_requested"
            and (phone is None or e.data["phone"] == phone) and (kind is None or e.data["kind"] == kind)]


async def last_code(auth: Auth, phone: str = PHONE, kind: str | None = None) -> str:
    code: str = (await sms(auth, phone, kind))[-1]["code"]
    return code


async def register_by_phone(auth: Auth, username: str = "alice", phone: str = PHONE) -> dict[str, Any]:
    resp = await auth.client.post(f"{API}/register", json={"username": username, "phone": phone,
                                                           "password": PASSWORD})
    assert resp.status_code == 201, resp.text
    body: dict[str, Any] = resp.json()
    return body


async def confirm(auth: Auth, code: str, phone: str = PHONE) -> Any:
    return await auth.client.post(f"{API}/register/phone/confirm", json={"phone": phone, "code": code})


async def test_register_by_phone_confirm_and_sign_in_both_ways(auth: Auth) -> None:
    user = await register_by_phone(auth, phone="+44 7911 123456")  # normalised to E.164
    assert user["email"] is None and user["phone_verified"] is False
    [message] = await sms(auth)
    assert message["phone"] == PHONE and message["kind"] == "verify_phone" and len(message["code"]) == 6
    stored = await auth.sql("SELECT phone, phone_verified_at FROM users")
    assert stored[0].phone == PHONE and stored[0].phone_verified_at is None

    tokens = (await confirm(auth, message["code"])).json()
    assert tokens["user"]["phone"] == PHONE and tokens["user"]["phone_verified"] is True
    verified = [e.data for e in await auth.outbox() if e.type == "quark.auth.phone_verified"]
    assert verified == [{"user_id": user["id"], "username": "alice", "phone": PHONE, "previous_phone": None}]
    problem(await confirm(auth, message["code"]), 401, "invalid-code")  # single use

    by_password = await auth.login("+44 7911 123456", PASSWORD)  # phone + password
    assert by_password["user"]["id"] == user["id"]
    assert (await auth.client.post(f"{API}/login/phone/code", json={"phone": PHONE})).status_code == 202
    by_code = await auth.client.post(f"{API}/login/phone", json={"phone": PHONE,
                                                                 "code": await last_code(auth, kind="login_code")})
    assert by_code.status_code == 200 and by_code.json()["user"]["id"] == user["id"]


async def test_five_wrong_codes_spend_the_code(auth: Auth) -> None:
    await register_by_phone(auth)
    code = await last_code(auth)
    wrong = f"{(int(code) + 1) % 10**6:06d}"
    for _ in range(5):
        problem(await confirm(auth, wrong), 401, "invalid-code")
    problem(await confirm(auth, code), 401, "invalid-code")  # gone: a new code is needed


async def test_a_code_expires_after_five_minutes(auth: Auth) -> None:
    clock = FakeClock(auth.rt.clock())
    auth.rt.set_clock(clock)
    await register_by_phone(auth)
    code = await last_code(auth)
    clock.advance(301)
    problem(await confirm(auth, code), 401, "invalid-code")


async def test_codes_are_stored_hashed(auth: Auth) -> None:
    await register_by_phone(auth)
    code = await last_code(auth)
    stored = [await auth.rt.redis.get(k) async for k in auth.rt.redis.scan_iter(auth.rt.key("phone-code", "*"))]
    assert stored and all(code not in (v or b"").decode() for v in stored)


async def test_send_back_off_per_number(start_auth: Callable[..., Any]) -> None:
    auth: Auth = await start_auth(**{**OPEN, "sms_backoff_base": 30, "sms_backoff_max": 600})
    clock = FakeClock(auth.rt.clock())
    auth.rt.set_clock(clock)
    url = f"{API}/login/phone/code"
    assert (await auth.client.post(url, json={"phone": OTHER})).status_code == 202
    first = await auth.client.post(url, json={"phone": OTHER})
    problem(first, 429, "sms-backoff")
    assert 1 <= int(first.headers["retry-after"]) <= 30
    clock.advance(31)
    assert (await auth.client.post(url, json={"phone": OTHER})).status_code == 202
    clock.advance(31)  # the pause doubled: 60 s now
    problem(await auth.client.post(url, json={"phone": OTHER}), 429, "sms-backoff")
    clock.advance(30)
    assert (await auth.client.post(url, json={"phone": OTHER})).status_code == 202


async def test_send_limits_per_number_ip_and_account(start_auth: Callable[..., Any]) -> None:
    auth: Auth = await start_auth(**{**OPEN, "sms_number_limit": 2, "sms_ip_limit": 4})
    url = f"{API}/login/phone/code"
    for _ in range(2):
        assert (await auth.client.post(url, json={"phone": OTHER})).status_code == 202
    problem(await auth.client.post(url, json={"phone": OTHER}), 429)  # per number
    assert (await auth.client.post(url, json={"phone": PHONE})).status_code == 202
    # per IP: 4 requests, the refused one counted too
    problem(await auth.client.post(url, json={"phone": "+447911123458"}), 429)

    limited: Auth = await start_auth(**{**OPEN, "sms_account_limit": 2})
    _, alice = await limited.user("alice")
    for number in (PHONE, OTHER):
        resp = await limited.client.post(f"{API}/phone", json={"phone": number, "password": PASSWORD}, headers=alice)
        assert resp.status_code == 202
    resp = await limited.client.post(f"{API}/phone", json={"phone": "+447911123458", "password": PASSWORD},
                                     headers=alice)
    problem(resp, 429)  # per account


async def test_sign_in_code_requests_do_not_reveal_accounts(auth: Auth) -> None:
    await register_by_phone(auth)
    await confirm(auth, await last_code(auth))
    known = await auth.client.post(f"{API}/login/phone/code", json={"phone": PHONE})
    unknown = await auth.client.post(f"{API}/login/phone/code", json={"phone": OTHER})
    assert (known.status_code, known.json()) == (unknown.status_code, unknown.json()) == (202, {"status": "accepted"})
    assert await sms(auth, OTHER) == []  # no SMS to a number without an account
    wrong = await auth.client.post(f"{API}/login/phone", json={"phone": OTHER, "code": "123456"})
    problem(wrong, 401, "invalid-code")


async def test_registering_a_verified_number_again_reveals_nothing(auth: Auth) -> None:
    await register_by_phone(auth)
    await confirm(auth, await last_code(auth))
    again = await register_by_phone(auth, "mallory")
    assert again["username"] == "mallory" and again["phone_verified"] is False
    assert len(await sms(auth)) == 1  # nothing sent, nothing stored
    assert [r.username for r in await auth.sql("SELECT username FROM users")] == ["alice"]


async def test_unverified_numbers_block_nobody(auth: Auth) -> None:
    await register_by_phone(auth, "squatter")  # never confirmed
    await register_by_phone(auth, "owner")
    tokens = (await confirm(auth, await last_code(auth))).json()
    assert tokens["user"]["username"] == "owner"


async def test_wrong_sign_in_codes_count_in_the_lockout(start_auth: Callable[..., Any]) -> None:
    auth: Auth = await start_auth(**{**OPEN, "lockout_threshold": 3})
    await register_by_phone(auth)
    await confirm(auth, await last_code(auth))
    for _ in range(3):
        await auth.client.post(f"{API}/login/phone/code", json={"phone": PHONE})
        problem(await auth.client.post(f"{API}/login/phone", json={"phone": PHONE, "code": "000000"}), 401)
    await auth.client.post(f"{API}/login/phone/code", json={"phone": PHONE})
    code = await last_code(auth, kind="login_code")
    problem(await auth.client.post(f"{API}/login/phone", json={"phone": PHONE, "code": code}), 429, "account-locked")


async def test_attach_change_and_remove_a_phone(auth: Auth) -> None:
    _, alice = await auth.user("alice")
    url = f"{API}/phone"
    problem(await auth.client.post(url, json={"phone": PHONE}, headers=alice), 403)  # password needed
    assert (await auth.client.post(url, json={"phone": PHONE, "password": PASSWORD}, headers=alice)).status_code == 202
    problem(await auth.client.post(f"{url}/confirm", json={"code": "000000"}, headers=alice), 422, "invalid-code")
    user = (await auth.client.post(f"{url}/confirm", json={"code": await last_code(auth)}, headers=alice)).json()
    assert user["phone"] == PHONE and user["phone_verified"] is True

    assert (await auth.client.post(url, json={"phone": OTHER, "password": PASSWORD}, headers=alice)).status_code == 202
    changed = await auth.client.post(f"{url}/confirm", json={"code": await last_code(auth, OTHER)}, headers=alice)
    assert changed.json()["phone"] == OTHER
    events = [e.data for e in await auth.outbox() if e.type == "quark.auth.phone_verified"]
    assert events[-1]["previous_phone"] == PHONE

    removed = await auth.client.request("DELETE", url, json={"password": PASSWORD}, headers=alice)
    assert removed.status_code == 200 and removed.json()["phone"] is None
    assert "quark.auth.phone_removed" in await auth.outbox_types()


async def test_attaching_a_number_of_another_account_sends_nothing(auth: Auth) -> None:
    await register_by_phone(auth, "owner")
    await confirm(auth, await last_code(auth))
    _, mallory = await auth.user("mallory")
    resp = await auth.client.post(f"{API}/phone", json={"phone": PHONE, "password": PASSWORD}, headers=mallory)
    assert resp.status_code == 202
    assert len(await sms(auth)) == 1


async def test_sms_as_second_factor_only_without_totp(auth: Auth) -> None:
    _, alice = await auth.user("alice")
    await auth.client.post(f"{API}/phone", json={"phone": PHONE, "password": PASSWORD}, headers=alice)
    await auth.client.post(f"{API}/phone/confirm", json={"code": await last_code(auth)}, headers=alice)
    on = await auth.client.post(f"{API}/2fa/sms", json={"enabled": True, "password": PASSWORD}, headers=alice)
    assert on.json()["sms_mfa"] is True
    challenge = (await auth.client.post(f"{API}/login", json={"login": "alice", "password": PASSWORD})).json()
    assert challenge["mfa_required"] is True and challenge["channel"] == "sms"
    code = await last_code(auth, kind="mfa_code")
    wrong = await auth.client.post(f"{API}/login/mfa", json={"mfa_token": challenge["mfa_token"], "code": "000000"})
    problem(wrong, 401, "invalid-code")
    done = await auth.client.post(f"{API}/login/mfa", json={"mfa_token": challenge["mfa_token"], "code": code})
    assert done.status_code == 200 and done.json()["user"]["sms_mfa"] is True


async def test_phone_login_can_be_switched_off(start_auth: Callable[..., Any]) -> None:
    auth: Auth = await start_auth(**OPEN, phone_passwordless=False)
    problem(await auth.client.post(f"{API}/login/phone/code", json={"phone": PHONE}), 403,
            "phone-code-login-disabled")


async def test_invalid_numbers_are_422_and_change_nothing(auth: Auth) -> None:
    for phone in ("12", "+1 555", "not a phone", "+999 1234567"):
        resp = await auth.client.post(f"{API}/register", json={"username": "alice", "phone": phone,
                                                               "password": PASSWORD})
        problem(resp, 422)
    assert await auth.sql("SELECT 1 FROM users") == []


async def test_codes_are_not_logged_in_production(start_auth: Callable[..., Any],
                                                  caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    auth: Auth = await start_auth(**OPEN, env="prod", bcrypt_rounds=12)
    await register_by_phone(auth)
    code = await last_code(auth)
    assert not any(code in r.getMessage() for r in caplog.records)


async def test_token_for_phone_account(auth: Auth) -> None:
    await register_by_phone(auth)
    tokens = (await confirm(auth, await last_code(auth))).json()
    me = await auth.client.get(f"{API}/me", headers=bearer(tokens["access_token"]))
    assert me.json()["phone"] == PHONE and me.json()["has_password"] is True
    problem(await auth.client.post(f"{API}/verify-email/request", headers=bearer(tokens["access_token"])), 409,
            "no-email")
