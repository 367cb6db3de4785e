"""Broken authentication (OWASP API2): the auth service's session and credential rules.

The auth suite already proves much of this (services/auth/tests: test_tokens.py::
test_refresh_rotates_and_reuse_revokes_the_family, test_accounts.py::
test_wrong_password_and_unknown_user_look_the_same_and_both_hash, test_limits.py::
test_lockout_after_failures_and_unlock_after_the_window, test_mfa.py::test_login_with_totp); these
tests add what an attacker would look at: the *old* access token after a refresh-token replay, and
responses compared byte for byte.
"""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pyotp
from security_testkit import PASSWORD, Running, assert_problem, spec, start

from quark_sdk.testing import QuarkTestEnv

API = "/api/v1/auth"
# Headers that may differ between two otherwise identical responses.
VOLATILE = {"date", "traceparent", "x-request-id", "x-trace-id", "content-length"}


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def fingerprint(resp: httpx.Response) -> tuple[int, bytes, list[tuple[str, str]]]:
    headers = sorted((k.lower(), v) for k, v in resp.headers.items() if k.lower() not in VOLATILE)
    return resp.status_code, resp.content, headers


async def login(svc: Running, who: str, password: str) -> httpx.Response:
    return await svc.client.post(f"{API}/login", json={"login": who, "password": password})


async def test_refresh_reuse_revokes_the_family_and_the_old_access_token(quark: QuarkTestEnv,
                                                                          tmp_path: Path) -> None:
    svc = await start(quark, spec("auth"), tmp_path)
    await svc.user("alice")
    first = await svc.login("alice")
    other_device = await svc.login("alice")
    second = (await svc.client.post(f"{API}/refresh", json={"refresh_token": first["refresh_token"]})).json()
    for tokens in (first, second):  # both access tokens work before the replay
        assert (await svc.client.get(f"{API}/me", headers=bearer(tokens))).status_code == 200

    replay = await svc.client.post(f"{API}/refresh", json={"refresh_token": first["refresh_token"]})
    assert_problem(replay, 401)
    for tokens in (first, second):  # the old and the new access token die with the session
        assert_problem(await svc.client.get(f"{API}/me", headers=bearer(tokens)), 401)
        assert_problem(await svc.client.get(f"{API}/sessions", headers=bearer(tokens)), 401)
    assert_problem(await svc.client.post(f"{API}/refresh", json={"refresh_token": second["refresh_token"]}), 401)
    # The other device's session is a different family and lives on.
    assert (await svc.client.get(f"{API}/me", headers=bearer(other_device))).status_code == 200


async def test_unknown_user_and_wrong_password_are_byte_identical(quark: QuarkTestEnv, tmp_path: Path) -> None:
    svc = await start(quark, spec("auth"), tmp_path)
    await svc.user("alice")
    wrong = await login(svc, "alice", "not the password")
    unknown = await login(svc, "nobody", "not the password")
    unknown_email = await login(svc, "nobody@example.com", "not the password")
    known_email = await login(svc, "alice@example.com", "not the password")
    assert_problem(wrong, 401)
    assert fingerprint(wrong) == fingerprint(unknown) == fingerprint(unknown_email) == fingerprint(known_email)


async def test_lockout_refuses_the_right_password_with_the_same_response(quark: QuarkTestEnv,
                                                                          tmp_path: Path) -> None:
    svc = await start(quark, spec("auth"), tmp_path, lockout_threshold=3, lockout_window=3600, lockout_base=60)
    rt = svc.svc.ctx.runtime
    clock = Clock(time.time() // 3600 * 3600 + 1)  # the start of a counting window
    rt.set_clock(clock)
    await svc.user("alice")
    for who in ("alice", "ghost"):  # a real and an unknown account lock alike
        for _ in range(3):
            assert_problem(await login(svc, who, "not the password"), 401)
    right = await login(svc, "alice", PASSWORD)
    wrong = await login(svc, "alice", "not the password")
    ghost = await login(svc, "ghost", PASSWORD)
    assert_problem(right, 429)
    assert right.headers["retry-after"] == "60"
    assert fingerprint(right) == fingerprint(wrong)
    assert fingerprint(right)[0::2] == fingerprint(ghost)[0::2]  # same status and headers
    assert right.json()["detail"] == ghost.json()["detail"]
    clock.now += 61
    assert (await login(svc, "alice", PASSWORD)).status_code == 200  # and it ends after the window


async def test_a_totp_code_works_once(quark: QuarkTestEnv, tmp_path: Path) -> None:
    svc = await start(quark, spec("auth"), tmp_path)
    rt = svc.svc.ctx.runtime
    clock = Clock(time.time() - 100)
    rt.set_clock(clock)
    user = await svc.user("alice")
    setup = (await svc.client.post(f"{API}/2fa/setup", headers=user.headers)).json()
    totp = pyotp.TOTP(setup["secret"])
    confirm = await svc.client.post(f"{API}/2fa/confirm", json={"code": totp.at(clock.now)}, headers=user.headers)
    assert confirm.status_code == 200, confirm.text
    code = totp.at(clock.now + 30)  # the next step (the enrolment code is already spent)

    async def second_factor(code: str) -> httpx.Response:
        challenge = (await login(svc, "alice", PASSWORD)).json()
        assert challenge["mfa_required"] is True
        return await svc.client.post(f"{API}/login/mfa", json={"mfa_token": challenge["mfa_token"], "code": code})

    assert (await second_factor(code)).status_code == 200
    replay = await second_factor(code)
    assert_problem(replay, 401)
    assert fingerprint(replay) == fingerprint(await second_factor("000000"))  # a replay looks like a wrong code


def bearer(tokens: dict[str, str]) -> dict[str, str]:
    return {"Authorization": f"Bearer {tokens['access_token']}"}
