"""Broken object property level authorisation (OWASP API3): mass assignment and excessive data exposure.

Request bodies are closed models (`extra="forbid"`), so a field the client may not set is refused
with a 422 problem and changes nothing. No response carries a password hash, a password, or a
TOTP secret (beyond the one-time enrolment answer). The fuzzing suite applies the same "no secret in
any response" check to every response it sees (test_schemathesis.py::no_secrets_in_responses).
"""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pyotp
import pytest
from security_testkit import PASSWORD, Running, assert_problem, spec, start

from quark_sdk.testing import QuarkTestEnv

SECRET_MARKERS = re.compile(r"\$2[aby]\$\d\d\$|password_hash|totp_secret|\$argon2", re.IGNORECASE)


def assert_no_secrets(resp: httpx.Response, *secrets: str) -> None:
    text = resp.text
    assert not SECRET_MARKERS.search(text), f"{resp.request.method} {resp.request.url}: {text[:300]}"
    for secret in secrets:
        assert secret not in text, f"{resp.request.method} {resp.request.url} leaks a secret"


async def test_user_cannot_make_themselves_admin(quark: QuarkTestEnv, tmp_path: Path) -> None:
    svc = await start(quark, spec("user"), tmp_path)
    me = await svc.user()
    before = (await svc.client.get("/api/v1/users/me", headers=me.headers)).json()
    for body in ({"role": "admin"}, {"roles": ["admin"]}, {"is_admin": True}, {"suspended": False},
                 {"user_id": "00000000-0000-0000-0000-000000000000"}, {"username": "root"},
                 {"followers_count": 10**6}, {"display_name": "ok", "role": "admin"}):
        resp = await svc.client.patch("/api/v1/users/me", json=body, headers=me.headers)
        if resp.status_code != 200:
            assert_problem(resp, 422)
        else:  # ignored is acceptable too; the field must not have changed anything
            assert not set(body) - {"display_name"} & set(resp.json())
    assert (await svc.client.get("/api/v1/users/me", headers=me.headers)).json() == before
    assert_problem(await svc.client.get("/api/v1/users/admin/users", headers=me.headers), 403)


async def test_register_cannot_set_roles_or_verification(quark: QuarkTestEnv, tmp_path: Path) -> None:
    svc = await start(quark, spec("auth"), tmp_path)
    for extra in ({"roles": ["admin"]}, {"role": "admin"}, {"email_verified": True}, {"mfa_enabled": False},
                  {"id": "00000000-0000-0000-0000-000000000001"}, {"password_hash": "$2b$04$x"}):
        resp = await svc.client.post("/api/v1/auth/register", json={
            "username": "mallory", "email": "mallory@example.com", "password": PASSWORD, **extra})
        assert_problem(resp, 422)
    assert not await svc.sql("SELECT 1 FROM users")


async def test_blog_post_cannot_set_author_counts_or_moderation(quark: QuarkTestEnv, tmp_path: Path) -> None:
    svc = await start(quark, spec("blog"), tmp_path)
    a, b = await svc.user(), await svc.user()
    for extra in ({"author_id": b.id}, {"author": b.username}, {"status": "published", "publish": False},
                  {"hidden": False}, {"like_count": 1000}, {"reactions": {"like": 5}}, {"id": b.id}):
        resp = await svc.client.post("/api/v1/posts", json={"title": "t", "body": "b", **extra}, headers=a.headers)
        assert_problem(resp, 422)
    post = (await svc.client.post("/api/v1/posts", json={"title": "t", "body": "b", "publish": True},
                                  headers=a.headers)).json()
    for extra in ({"author_id": b.id}, {"hidden": True}, {"status": "draft"}, {"comment_count": 7}):
        assert_problem(await svc.client.patch(f"/api/v1/posts/{post['id']}", json=extra, headers=a.headers), 422)
    again = (await svc.client.get(f"/api/v1/posts/{post['id']}", headers=a.headers)).json()
    assert again == post


async def test_no_response_contains_password_hashes_or_totp_secrets(quark: QuarkTestEnv, tmp_path: Path) -> None:
    svc: Running = await start(quark, spec("auth"), tmp_path)
    c = svc.client
    user = await svc.user("erin")
    admin = await svc.user("root", roles=("user", "admin"))
    seen: list[httpx.Response] = []

    setup = await c.post("/api/v1/auth/2fa/setup", headers=user.headers)
    secret = setup.json()["secret"]  # shown once, at enrolment: the only response that may carry it
    totp = pyotp.TOTP(secret)
    seen.append(await c.post("/api/v1/auth/2fa/confirm", json={"code": totp.now()}, headers=user.headers))
    seen.append(await c.get("/api/v1/auth/me", headers=user.headers))
    seen.append(await c.get("/api/v1/auth/sessions", headers=user.headers))
    seen.append(await c.get("/api/v1/auth/admin/users", headers=admin.headers))
    seen.append(await c.get(f"/api/v1/auth/admin/users/{user.id}", headers=admin.headers))
    seen.append(await c.post("/api/v1/auth/2fa/setup", headers=user.headers))  # already enabled: no new secret
    seen.append(await c.get("/api/v1/auth/2fa/qr.png", headers=user.headers))
    challenge = await c.post("/api/v1/auth/login", json={"login": "erin", "password": PASSWORD})
    seen.append(challenge)
    seen.append(await c.post("/api/v1/auth/login/mfa", json={"mfa_token": challenge.json()["mfa_token"],
                                                             "code": "000000"}))
    seen.append(await c.post("/api/v1/auth/login", json={"login": "erin", "password": "wrong password!"}))
    seen.append(await c.post("/api/v1/auth/register", json={"username": "erin", "email": "erin@example.com",
                                                            "password": PASSWORD}))
    seen.append(await c.post("/api/v1/auth/password-reset/request", json={"email": "erin@example.com"}))
    seen.append(await c.get("/api/v1/auth/.well-known/jwks.json"))
    for resp in seen:
        assert resp.status_code < 500, resp.text
        assert_no_secrets(resp, secret, PASSWORD)


@pytest.mark.parametrize("name", ["user", "blog"])
async def test_profile_and_post_payloads_carry_no_account_secrets(name: str, quark: QuarkTestEnv,
                                                                  tmp_path: Path) -> None:
    """The replicas other services keep of an account hold no credentials (emails stay in auth too)."""
    svc = await start(quark, spec(name), tmp_path)
    a = await svc.user()
    other = await svc.user()
    path = f"/api/v1/users/{a.username}" if name == "user" else f"/api/v1/posts/by/{a.username}"
    resp = await svc.client.get(path, headers=other.headers)
    assert resp.status_code == 200, resp.text
    assert_no_secrets(resp)
    assert f"{a.username}@example.com" not in resp.text  # another user never sees the email address
