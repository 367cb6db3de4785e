"""Abuse protection: per-account progressive lockout, per-IP limits, 429 + Retry-After (time injected)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from auth_testkit import API, PASSWORD, Auth, FakeClock, assert_problem


async def fail(auth: Auth, login: str = "alice") -> Any:
    return await auth.client.post(f"{API}/login", json={"login": login, "password": "wrong password!"})


async def test_parallel_guesses_never_exceed_the_lockout_threshold(start_auth: Callable[..., Any]) -> None:
    """Failures are counted after the bcrypt check; a burst of parallel guesses must not all pass the lock
    check first. The checks are held at a gate until every request is either waiting at it or answered, so
    the burst overlaps completely (before the fix: 20 bcrypt checks for a threshold of 3)."""
    auth: Auth = await start_auth(lockout_threshold=3, lockout_window=3600, lockout_base=60, lockout_max=240)
    await auth.register("alice")
    hasher = auth.rt.hasher
    gate, waiting = asyncio.Event(), 0
    real_verify = hasher.verify

    async def gated_verify(password: str, hashed: str | None) -> bool:
        nonlocal waiting
        waiting += 1
        await gate.wait()
        return await real_verify(password, hashed)

    hasher.verify = gated_verify  # type: ignore[method-assign]
    before = hasher.checks
    attempts = [asyncio.create_task(fail(auth)) for _ in range(20)]

    def all_arrived() -> bool:
        return waiting + sum(t.done() for t in attempts) == len(attempts)

    deadline = time.monotonic() + 30
    while not all_arrived():
        assert time.monotonic() < deadline, "the burst never settled"
        await asyncio.sleep(0.01)  # polling the condition, not a timing assumption
    gate.set()
    answers = await asyncio.gather(*attempts)
    hasher.verify = real_verify  # type: ignore[method-assign]

    assert hasher.checks - before == 3  # the guesses that were let through: exactly the threshold
    assert sorted(r.status_code for r in answers) == [401] * 3 + [429] * 17
    for refused in (r for r in answers if r.status_code == 429):
        assert assert_problem(refused, 429)["type"].endswith("/account-locked")
    # And the account is locked now, even for the right password.
    assert_problem(await auth.client.post(f"{API}/login", json={"login": "alice", "password": PASSWORD}), 429)


async def test_lockout_after_failures_and_unlock_after_the_window(start_auth: Callable[..., Any]) -> None:
    auth: Auth = await start_auth(lockout_threshold=3, lockout_window=3600, lockout_base=60, lockout_max=240)
    # Start at the beginning of a counting window, so every failure below falls into the same one.
    clock = FakeClock(time.time() // 3600 * 3600 + 1)
    auth.rt.set_clock(clock)
    await auth.register("alice")

    for _ in range(3):
        assert_problem(await fail(auth), 401)
    locked = await auth.client.post(f"{API}/login", json={"login": "alice", "password": PASSWORD})
    problem = assert_problem(locked, 429)  # even the right password, while locked
    assert locked.headers["retry-after"] == "60" and problem["type"].endswith("/account-locked")
    checks = auth.rt.hasher.checks
    assert_problem(await fail(auth), 429)
    assert auth.rt.hasher.checks == checks  # a locked account costs no bcrypt work

    clock.advance(61)
    # Unlocked; but one more failure inside the window locks again, twice as long (progressive).
    assert_problem(await fail(auth), 401)
    relocked = await fail(auth)
    assert_problem(relocked, 429)
    assert relocked.headers["retry-after"] == "120"
    clock.advance(121)
    assert_problem(await fail(auth), 401)
    assert (await fail(auth)).headers["retry-after"] == "240"
    clock.advance(241)
    assert_problem(await fail(auth), 401)
    assert (await fail(auth)).headers["retry-after"] == "240"  # capped at lockout_max

    clock.advance(241)
    ok = await auth.client.post(f"{API}/login", json={"login": "alice", "password": PASSWORD})
    assert ok.status_code == 200, ok.text
    # Success resets the counters: the next lockout starts from scratch.
    for _ in range(3):
        assert_problem(await fail(auth), 401)
    assert (await fail(auth)).headers["retry-after"] == "60"


async def test_failures_age_out_of_the_window(start_auth: Callable[..., Any]) -> None:
    auth: Auth = await start_auth(lockout_threshold=3, lockout_window=60)
    clock = FakeClock(time.time())
    auth.rt.set_clock(clock)
    await auth.register("alice")
    for _ in range(2):
        assert_problem(await fail(auth), 401)
    clock.advance(200)  # two windows later the earlier failures no longer count
    for _ in range(2):
        assert_problem(await fail(auth), 401)
    assert (await auth.client.post(f"{API}/login", json={"login": "alice", "password": PASSWORD})).status_code == 200


async def test_unknown_accounts_lock_like_real_ones(start_auth: Callable[..., Any]) -> None:
    auth: Auth = await start_auth(lockout_threshold=2)
    await auth.register("alice")
    for login in ("alice", "ghost"):
        answers = [(await fail(auth, login)).status_code for _ in range(3)]
        assert answers == [401, 401, 429], login


async def test_lockout_is_per_account(start_auth: Callable[..., Any]) -> None:
    auth: Auth = await start_auth(lockout_threshold=2)
    await auth.register("alice")
    await auth.register("bob")
    for _ in range(2):
        await fail(auth, "alice")
    assert_problem(await fail(auth, "ALICE@example.com"), 429)  # the same account, by email
    assert (await auth.client.post(f"{API}/login", json={"login": "bob", "password": PASSWORD})).status_code == 200


async def test_per_ip_login_limit(start_auth: Callable[..., Any]) -> None:
    auth: Auth = await start_auth(login_ip_limit=4, login_ip_window=60, lockout_threshold=100)
    clock = FakeClock(time.time())
    auth.rt.set_clock(clock)
    await auth.register("alice")
    for name in ("a1", "a2", "a3", "a4"):  # spraying many accounts from one address
        assert_problem(await fail(auth, name), 401)
    limited = await fail(auth, "a5")
    assert_problem(limited, 429)
    assert 1 <= int(limited.headers["retry-after"]) <= 60
    clock.advance(121)
    assert (await auth.client.post(f"{API}/login", json={"login": "alice", "password": PASSWORD})).status_code == 200


async def test_forwarded_for_is_used_only_when_trusted(start_auth: Callable[..., Any]) -> None:
    auth: Auth = await start_auth(login_ip_limit=2, trust_proxy_headers=True)
    for name in ("a1", "a2"):
        await auth.client.post(f"{API}/login", json={"login": name, "password": "x" * 12},
                               headers={"X-Forwarded-For": "203.0.113.7"})
    assert_problem(await auth.client.post(f"{API}/login", json={"login": "a3", "password": "x" * 12},
                                          headers={"X-Forwarded-For": "203.0.113.7"}), 429)
    other_ip = await auth.client.post(f"{API}/login", json={"login": "a3", "password": "x" * 12},
                                      headers={"X-Forwarded-For": "spoofed, 198.51.100.9"})
    assert_problem(other_ip, 401)


async def test_registration_and_reset_request_limits(start_auth: Callable[..., Any]) -> None:
    auth: Auth = await start_auth(register_ip_limit=2, email_request_limit=2, email_request_ip_limit=100)
    await auth.register("alice")
    await auth.register("bob")
    third = await auth.client.post(f"{API}/register", json={"username": "carol", "email": "c@example.com",
                                                            "password": PASSWORD})
    assert_problem(third, 429)
    assert "retry-after" in third.headers
    # Reset requests per account are capped silently (always 202: no enumeration, no mail bombing).
    for _ in range(4):
        resp = await auth.client.post(f"{API}/password-reset/request", json={"email": "alice@example.com"})
        assert resp.status_code == 202
    assert len(await auth.emails("reset_password")) == 2


async def test_sensitive_actions_are_rate_limited(start_auth: Callable[..., Any]) -> None:
    auth: Auth = await start_auth(sensitive_action_limit=2)
    _, headers = await auth.user("alice")
    body = {"current_password": "wrong password!", "new_password": "another good password"}
    for _ in range(2):
        assert_problem(await auth.client.post(f"{API}/password", json=body, headers=headers), 403)
    assert_problem(await auth.client.post(f"{API}/password", json=body, headers=headers), 429)
