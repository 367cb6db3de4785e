"""TOTP two-factor authentication: enrolment, QR code, login challenge, recovery codes, disable."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jwt
import pyotp
from auth_testkit import API, PASSWORD, Auth, FakeClock, assert_problem, bearer


async def enable_2fa(auth: Auth, headers: dict[str, str]) -> tuple[pyotp.TOTP, list[str]]:
    setup = await auth.client.post(f"{API}/2fa/setup", headers=headers)
    assert setup.status_code == 200, setup.text
    totp = pyotp.TOTP(setup.json()["secret"])
    code = totp.at(auth.rt.clock())
    confirm = await auth.client.post(f"{API}/2fa/confirm", json={"code": code}, headers=headers)
    assert confirm.status_code == 200, confirm.text
    return totp, confirm.json()["recovery_codes"]


async def mfa_challenge(auth: Auth, username: str = "alice") -> str:
    resp = await auth.client.post(f"{API}/login", json={"login": username, "password": PASSWORD})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["mfa_required"] is True and "access_token" not in body
    token: str = body["mfa_token"]
    return token


async def test_enrolment_qr_and_confirm(auth: Auth) -> None:
    _, headers = await auth.user("alice")
    assert_problem(await auth.client.get(f"{API}/2fa/qr.png", headers=headers), 404)  # nothing pending
    setup = (await auth.client.post(f"{API}/2fa/setup", headers=headers)).json()
    uri = urlsplit(setup["otpauth_uri"])
    assert uri.scheme == "otpauth" and uri.netloc == "totp" and "alice" in uri.path
    assert parse_qs(uri.query)["secret"] == [setup["secret"]] and parse_qs(uri.query)["issuer"] == ["Quark"]
    qr = await auth.client.get(setup["qr_png_url"], headers=headers)
    assert qr.status_code == 200 and qr.headers["content-type"] == "image/png"
    assert qr.content.startswith(b"\x89PNG\r\n\x1a\n") and qr.headers["cache-control"] == "no-store"
    assert_problem(await auth.client.get(f"{API}/2fa/qr.png"), 401)

    wrong = await auth.client.post(f"{API}/2fa/confirm", json={"code": "000000"}, headers=headers)
    assert_problem(wrong, 422)
    for bad in ("12345", "abcdef", "1" * 11):
        assert_problem(await auth.client.post(f"{API}/2fa/confirm", json={"code": bad}, headers=headers), 422)
    me = (await auth.client.get(f"{API}/me", headers=headers)).json()
    assert me["mfa_enabled"] is False  # wrong codes changed nothing

    totp = pyotp.TOTP(setup["secret"])
    ok = await auth.client.post(f"{API}/2fa/confirm", json={"code": totp.now()}, headers=headers)
    assert ok.status_code == 200 and ok.headers["cache-control"] == "no-store"
    codes = ok.json()["recovery_codes"]
    assert len(codes) == 10 and len(set(codes)) == 10 and all(len(c) == 19 for c in codes)
    assert (await auth.client.get(f"{API}/me", headers=headers)).json()["mfa_enabled"] is True
    assert_problem(await auth.client.post(f"{API}/2fa/setup", headers=headers), 409)
    assert_problem(await auth.client.post(f"{API}/2fa/confirm", json={"code": totp.now()}, headers=headers), 409)
    stored = await auth.sql("SELECT code_hash FROM recovery_codes")
    assert len(stored) == 10 and not {r.code_hash for r in stored} & set(codes)  # only hashes are kept


async def test_confirm_without_setup(auth: Auth) -> None:
    _, headers = await auth.user("alice")
    assert_problem(await auth.client.post(f"{API}/2fa/confirm", json={"code": "123456"}, headers=headers), 409)


async def test_login_with_totp(auth: Auth) -> None:
    # A fixed clock (a little in the past, so issued tokens are valid): no time step boundary can interfere.
    clock = FakeClock(time.time() - 100)
    auth.rt.set_clock(clock)
    _, headers = await auth.user("alice")
    totp, _ = await enable_2fa(auth, headers)
    logins_before = (await auth.outbox_types()).count("quark.auth.user_logged_in")

    token = await mfa_challenge(auth)
    assert (await auth.outbox_types()).count("quark.auth.user_logged_in") == logins_before  # not logged in yet
    wrong = await auth.client.post(f"{API}/login/mfa", json={"mfa_token": token, "code": "000000"})
    assert_problem(wrong, 401)
    # The code used to confirm enrolment cannot be replayed; the next step's code (within the ±1 step
    # tolerance for clock drift) works.
    current = totp.at(clock.now)
    assert_problem(await auth.client.post(f"{API}/login/mfa", json={"mfa_token": token, "code": current}), 401)
    next_code = totp.at(clock.now + 30)
    ok = await auth.client.post(f"{API}/login/mfa", json={"mfa_token": token, "code": next_code})
    assert ok.status_code == 200, ok.text
    tokens = ok.json()
    assert (await auth.client.get(f"{API}/me", headers=bearer(tokens["access_token"]))).status_code == 200
    assert jwt.decode(tokens["access_token"], options={"verify_signature": False})["amr"] == ["pwd", "otp"]
    # The challenge is single use, and so is the code.
    again = await auth.client.post(f"{API}/login/mfa", json={"mfa_token": token, "code": next_code})
    assert_problem(again, 401)
    replay = await auth.client.post(f"{API}/login/mfa", json={"mfa_token": await mfa_challenge(auth),
                                                               "code": next_code})
    assert_problem(replay, 401)
    logged_in = [e.data for e in await auth.outbox() if e.type == "quark.auth.user_logged_in"][-1]
    assert logged_in["mfa"] is True


async def test_recovery_codes_are_single_use(auth: Auth) -> None:
    _, headers = await auth.user("alice")
    _, codes = await enable_2fa(auth, headers)
    ok = await auth.client.post(f"{API}/login/mfa", json={"mfa_token": await mfa_challenge(auth),
                                                           "recovery_code": codes[0].lower().replace("-", " ")})
    assert ok.status_code == 200, ok.text
    again = await auth.client.post(f"{API}/login/mfa", json={"mfa_token": await mfa_challenge(auth),
                                                              "recovery_code": codes[0]})
    assert_problem(again, 401)
    other = await auth.client.post(f"{API}/login/mfa", json={"mfa_token": await mfa_challenge(auth),
                                                              "recovery_code": codes[1]})
    assert other.status_code == 200


async def test_mfa_challenge_limits_and_bad_input(auth: Auth) -> None:
    _, headers = await auth.user("alice")
    totp, _ = await enable_2fa(auth, headers)
    token = await mfa_challenge(auth)
    bad_bodies: list[dict[str, Any]] = [
        {"mfa_token": token}, {"mfa_token": token, "code": "123456", "recovery_code": "AAAA-BBBB-CCCC-DDDD"},
        {"mfa_token": "x", "code": "123456"}, {"mfa_token": token, "code": "1"}, {"code": "123456"},
    ]
    for body in bad_bodies:
        assert_problem(await auth.client.post(f"{API}/login/mfa", json=body), 422)
    assert_problem(await auth.client.post(f"{API}/login/mfa", json={"mfa_token": "x" * 43, "code": "123456"}), 401)
    for _ in range(auth.rt.settings.mfa_max_attempts):
        assert_problem(await auth.client.post(f"{API}/login/mfa", json={"mfa_token": token, "code": "000000"}), 401)
    # After too many wrong codes the challenge is gone: even the right code needs a fresh login.
    gone = await auth.client.post(f"{API}/login/mfa", json={"mfa_token": token, "code": totp.at(time.time() + 30)})
    assert assert_problem(gone, 401)["type"].endswith("/mfa-token-invalid")


async def test_disable_2fa(auth: Auth) -> None:
    _, headers = await auth.user("alice")
    await enable_2fa(auth, headers)
    assert_problem(await auth.client.post(f"{API}/2fa/disable", json={"password": "not the password"},
                                          headers=headers), 403)
    assert (await auth.client.get(f"{API}/me", headers=headers)).json()["mfa_enabled"] is True
    ok = await auth.client.post(f"{API}/2fa/disable", json={"password": PASSWORD}, headers=headers)
    assert ok.status_code == 204
    assert await auth.sql("SELECT id FROM recovery_codes") == []
    tokens = await auth.login("alice")  # no challenge any more
    assert "access_token" in tokens
    assert_problem(await auth.client.post(f"{API}/2fa/disable", json={"password": PASSWORD}, headers=headers), 409)


async def test_mfa_failures_lock_the_account_like_password_failures(start_auth: Callable[..., Any]) -> None:
    """Issue 16 item 3: the right password must not clear the failure count before the second factor.

    Wrong TOTP and recovery codes count in the same per-account lockout as wrong passwords, across fresh
    challenges (each one re-entering the right password), and only a complete login clears the count."""
    auth: Auth = await start_auth(lockout_threshold=3, lockout_window=3600, lockout_base=60, lockout_max=240)
    clock = FakeClock(time.time() - 100)
    auth.rt.set_clock(clock)
    _, headers = await auth.user("alice")
    totp, codes = await enable_2fa(auth, headers)

    for _ in range(3):  # a fresh challenge each time: the password is right, the code is not
        wrong = await auth.client.post(f"{API}/login/mfa", json={"mfa_token": await mfa_challenge(auth),
                                                                  "code": "000000"})
        assert_problem(wrong, 401)
    locked = await auth.client.post(f"{API}/login", json={"login": "alice", "password": PASSWORD})
    assert assert_problem(locked, 429)["type"].endswith("/account-locked")
    assert locked.headers["retry-after"] == "60"

    # A wrong recovery code counts the same: one more failure inside the window locks again, twice as long.
    clock.advance(61)
    bad = await auth.client.post(f"{API}/login/mfa", json={"mfa_token": await mfa_challenge(auth),
                                                            "recovery_code": "AAAA-BBBB-CCCC-DDDD"})
    assert_problem(bad, 401)
    relocked = await auth.client.post(f"{API}/login", json={"login": "alice", "password": PASSWORD})
    assert_problem(relocked, 429)
    assert relocked.headers["retry-after"] == "120"

    # Only the whole login, second factor included, clears the count: then two failures do not lock.
    clock.advance(121)
    ok = await auth.client.post(f"{API}/login/mfa", json={"mfa_token": await mfa_challenge(auth),
                                                           "code": totp.at(clock.now + 30)})
    assert ok.status_code == 200, ok.text
    for _ in range(2):
        wrong = await auth.client.post(f"{API}/login/mfa", json={"mfa_token": await mfa_challenge(auth),
                                                                  "recovery_code": codes[0] + "X"})
        assert_problem(wrong, 401)
    assert (await mfa_challenge(auth))  # not locked


async def test_regenerate_recovery_codes(auth: Auth) -> None:
    _, headers = await auth.user("alice")
    assert_problem(await auth.client.post(f"{API}/2fa/recovery-codes", json={"password": PASSWORD},
                                          headers=headers), 409)  # 2FA is off: nothing to regenerate
    _, old = await enable_2fa(auth, headers)
    assert_problem(await auth.client.post(f"{API}/2fa/recovery-codes", json={"password": "not the password"},
                                          headers=headers), 403)
    resp = await auth.client.post(f"{API}/2fa/recovery-codes", json={"password": PASSWORD}, headers=headers)
    assert resp.status_code == 200 and "no-store" in resp.headers["cache-control"]
    new = resp.json()["recovery_codes"]
    assert len(new) == len(old) and not set(new) & set(old)
    stale = await auth.client.post(f"{API}/login/mfa", json={"mfa_token": await mfa_challenge(auth),
                                                             "recovery_code": old[0]})
    assert_problem(stale, 401)  # the old set is gone
    fresh = await auth.client.post(f"{API}/login/mfa", json={"mfa_token": await mfa_challenge(auth),
                                                             "recovery_code": new[0]})
    assert fresh.status_code == 200 and "access_token" in fresh.json()
