"""Tokens: access JWT claims, verification by another service, refresh rotation and reuse, sessions, keys."""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from auth_testkit import API, Auth, FakeClock, assert_problem, bearer
from fastapi import FastAPI

from quark_sdk.auth import CurrentUser, JWKSCache, SigningKey, TokenVerifier, install_token_verifier
from quark_sdk.errors import install_error_handlers


@asynccontextmanager
async def other_service(auth: Auth, audience: str = "quark") -> AsyncIterator[httpx.AsyncClient]:
    """A separate service built only with the SDK: it trusts the auth service through its public JWKS."""
    jwks_client = httpx.AsyncClient(transport=httpx.ASGITransport(app=auth.svc.app), base_url="http://auth")
    app = FastAPI()
    install_error_handlers(app)
    install_token_verifier(app, TokenVerifier(
        {"quark-auth": JWKSCache(f"http://auth{API}/.well-known/jwks.json", client=jwks_client,
                                 min_refresh_interval=0)},
        audience=audience))

    @app.get("/whoami")
    async def whoami(user: CurrentUser) -> dict[str, Any]:
        return {"sub": user.subject, "username": user.username, "roles": sorted(user.roles),
                "permissions": sorted(user.permissions)}

    async with jwks_client, httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://other") as c:
        yield c


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def _claims(auth: Auth, **overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    claims = {"iss": "quark-auth", "aud": "quark", "sub": str(uuid.uuid4()), "username": "mallory", "roles": ["admin"],
              "iat": now, "exp": now + 600, "jti": uuid.uuid4().hex, "sid": str(uuid.uuid4())}
    claims.update(overrides)
    return claims


async def test_access_token_contract(auth: Auth) -> None:
    tokens, _ = await auth.user("alice")
    header = jwt.get_unverified_header(tokens["access_token"])
    assert header["alg"] == "EdDSA" and header["kid"] == auth.rt.keys.active_kid
    claims = jwt.decode(tokens["access_token"], options={"verify_signature": False})
    assert claims["sub"] == tokens["user"]["id"] and claims["username"] == "alice"
    assert claims["roles"] == ["user"] and "post:create" in claims["permissions"]
    assert claims["iss"] == "quark-auth" and claims["aud"] == "quark"
    assert claims["exp"] - claims["iat"] == 900 and len(claims["jti"]) >= 16
    assert claims["sid"] == tokens["session_id"]


async def test_jwks_is_public_and_cacheable(auth: Auth) -> None:
    resp = await auth.client.get(f"{API}/.well-known/jwks.json")
    assert resp.status_code == 200
    assert resp.headers["cache-control"] == "public, max-age=300"
    keys = resp.json()["keys"]
    assert auth.rt.keys.active_kid in {k["kid"] for k in keys}
    assert len(keys) == 2  # active + next (pre-published)
    assert all("d" not in k and k["alg"] == "EdDSA" and k["use"] == "sig" for k in keys)


async def test_another_service_accepts_auth_tokens(auth: Auth) -> None:
    tokens, _ = await auth.user("alice")
    async with other_service(auth) as other:
        resp = await other.get("/whoami", headers=bearer(tokens["access_token"]))
        assert resp.status_code == 200, resp.text
        assert resp.json()["sub"] == tokens["user"]["id"] and resp.json()["roles"] == ["user"]


async def test_another_service_refuses_bad_tokens(auth: Auth) -> None:
    tokens, _ = await auth.user("alice")
    good = tokens["access_token"]
    kid = auth.rt.keys.active_kid
    head, _payload, sig = good.split(".")
    claims = jwt.decode(good, options={"verify_signature": False})

    # Expired: issued by the real service, with its clock set back.
    clock = FakeClock(time.time() - 3600)
    auth.rt.set_clock(clock)
    expired = (await auth.login("alice"))["access_token"]
    auth.rt.set_clock(time.time)

    tampered = ".".join([head, _b64({**claims, "roles": ["admin"]}), sig])
    wrong_aud = auth.rt.keys.sign(_claims(auth, aud="another-station"))
    no_aud = auth.rt.keys.sign({k: v for k, v in _claims(auth).items() if k != "aud"})
    alg_none = ".".join([_b64({"alg": "none", "typ": "JWT", "kid": kid}), _b64(_claims(auth)), ""])
    public_pem = auth.rt.keys.keyset.active.private_key.public_key().public_bytes(
        encoding=__import__("cryptography.hazmat.primitives.serialization", fromlist=["Encoding"]).Encoding.Raw,
        format=__import__("cryptography.hazmat.primitives.serialization", fromlist=["PublicFormat"]).PublicFormat.Raw)
    hs256 = jwt.encode(_claims(auth), public_pem + b"-padding-to-32-bytes", algorithm="HS256", headers={"kid": kid})
    foreign = SigningKey.generate(kid=kid).sign(_claims(auth))  # right kid, wrong key
    unknown_kid = SigningKey.generate().sign(_claims(auth))
    refresh_as_access = tokens["refresh_token"]

    async with other_service(auth) as other:
        cases = {"expired": expired, "tampered": tampered, "wrong aud": wrong_aud, "no aud": no_aud,
                 "alg none": alg_none, "hs256 with public key": hs256, "foreign key": foreign,
                 "unknown kid": unknown_kid, "refresh token": refresh_as_access}
        for name, token in cases.items():
            resp = await other.get("/whoami", headers=bearer(token))
            problem = assert_problem(resp, 401)
            assert token not in resp.text, name
            if name == "expired":
                assert problem["detail"] == "token expired"
            if name == "wrong aud":
                assert problem["detail"] == "token audience invalid"
        assert (await other.get("/whoami", headers=bearer(good))).status_code == 200
    # The auth service itself refuses them the same way.
    for token in cases.values():
        assert_problem(await auth.client.get(f"{API}/me", headers=bearer(token)), 401)


async def test_audience_is_the_configured_one(start_auth: Callable[..., Any]) -> None:
    auth: Auth = await start_auth(token_audience="station-b")
    _tokens, headers = await auth.user("alice")
    assert (await auth.client.get(f"{API}/me", headers=headers)).status_code == 200
    async with other_service(auth, audience="quark") as other:
        assert_problem(await other.get("/whoami", headers=headers), 401)
    async with other_service(auth, audience="station-b") as other:
        assert (await other.get("/whoami", headers=headers)).status_code == 200


# -- refresh ----------------------------------------------------------------------------------------


async def test_refresh_rotates_and_reuse_revokes_the_family(auth: Auth) -> None:
    tokens, _ = await auth.user("alice")
    first = tokens["refresh_token"]
    resp = await auth.client.post(f"{API}/refresh", json={"refresh_token": first})
    assert resp.status_code == 200, resp.text
    assert resp.headers["cache-control"] == "no-store"
    second = resp.json()
    assert second["refresh_token"] != first and second["session_id"] == tokens["session_id"]
    third = (await auth.client.post(f"{API}/refresh", json={"refresh_token": second["refresh_token"]})).json()
    assert (await auth.client.get(f"{API}/me", headers=bearer(third["access_token"]))).status_code == 200

    # A thief replays the first token: the whole family dies, including the legitimate newest token.
    reuse = await auth.client.post(f"{API}/refresh", json={"refresh_token": first})
    assert assert_problem(reuse, 401)["type"].endswith("/refresh-token-reused")
    assert_problem(await auth.client.post(f"{API}/refresh", json={"refresh_token": third["refresh_token"]}), 401)
    assert_problem(await auth.client.get(f"{API}/me", headers=bearer(third["access_token"])), 401)
    [row] = await auth.sql("SELECT revoked_reason FROM sessions")
    assert row.revoked_reason == "refresh_reuse"
    # Other sessions of the same user are not touched.
    other = await auth.login("alice")
    assert (await auth.client.post(f"{API}/refresh", json={"refresh_token": other["refresh_token"]})).status_code == 200


async def test_refresh_token_expiry_and_session_max_age(start_auth: Callable[..., Any]) -> None:
    auth: Auth = await start_auth(refresh_token_ttl=3600, session_max_age=7200)
    clock = FakeClock(time.time())
    tokens, _ = await auth.user("alice")
    auth.rt.set_clock(clock)
    clock.advance(3601)
    assert_problem(await auth.client.post(f"{API}/refresh", json={"refresh_token": tokens["refresh_token"]}), 401)

    clock.now = time.time()
    fresh = await auth.login("alice")
    token = fresh["refresh_token"]
    for _ in range(3):  # used within its TTL each time, yet the session ends at max age
        clock.advance(3000)
        resp = await auth.client.post(f"{API}/refresh", json={"refresh_token": token})
        if resp.status_code != 200:
            break
        token = resp.json()["refresh_token"]
        assert resp.json()["refresh_expires_in"] <= 7200
    assert_problem(resp, 401)


async def test_bad_refresh_input(auth: Auth) -> None:
    assert_problem(await auth.client.post(f"{API}/refresh", json={"refresh_token": "x" * 43}), 401)
    assert_problem(await auth.client.post(f"{API}/refresh", json={"refresh_token": "x"}), 422)
    assert_problem(await auth.client.post(f"{API}/refresh", json={}), 422)
    assert_problem(await auth.client.post(f"{API}/refresh", json={"refresh_token": "x" * 43, "extra": 1}), 422)


# -- sessions ---------------------------------------------------------------------------------------


async def test_sessions_list_revoke_and_revoke_all(auth: Auth) -> None:
    await auth.register("alice")
    laptop = await auth.login("alice", **{"User-Agent": "laptop"})
    phone = await auth.login("alice", **{"User-Agent": "phone"})
    tablet = await auth.login("alice", **{"User-Agent": "tablet"})
    headers = bearer(laptop["access_token"])

    page = (await auth.client.get(f"{API}/sessions", headers=headers)).json()
    assert [s["user_agent"] for s in page["items"]] == ["tablet", "phone", "laptop"]
    assert [s["current"] for s in page["items"]] == [False, False, True]
    first = (await auth.client.get(f"{API}/sessions?limit=2", headers=headers)).json()
    rest = (await auth.client.get(f"{API}/sessions", params={"limit": 2, "cursor": first["next_cursor"]},
                                  headers=headers)).json()
    assert len(first["items"]) == 2 and [s["user_agent"] for s in rest["items"]] == ["laptop"]
    assert rest["next_cursor"] is None

    assert (await auth.client.delete(f"{API}/sessions/{phone['session_id']}", headers=headers)).status_code == 204
    assert_problem(await auth.client.post(f"{API}/refresh", json={"refresh_token": phone["refresh_token"]}), 401)
    assert_problem(await auth.client.get(f"{API}/me", headers=bearer(phone["access_token"])), 401)
    assert_problem(await auth.client.delete(f"{API}/sessions/{phone['session_id']}", headers=headers), 404)
    assert_problem(await auth.client.delete(f"{API}/sessions/{uuid.uuid4()}", headers=headers), 404)
    assert_problem(await auth.client.delete(f"{API}/sessions/not-a-uuid", headers=headers), 422)
    assert_problem(await auth.client.get(f"{API}/sessions?cursor=garbage", headers=headers), 422)
    assert_problem(await auth.client.get(f"{API}/sessions?limit=0", headers=headers), 422)

    # Someone else's session cannot be revoked (looks like it does not exist).
    await auth.register("bob")
    bob = await auth.login("bob")
    assert_problem(await auth.client.delete(f"{API}/sessions/{bob['session_id']}", headers=headers), 404)

    kept = await auth.client.post(f"{API}/sessions/revoke-all?keep_current=true", headers=headers)
    assert kept.json() == {"revoked": 1}  # the tablet
    assert (await auth.client.get(f"{API}/me", headers=headers)).status_code == 200
    assert_problem(await auth.client.get(f"{API}/me", headers=bearer(tablet["access_token"])), 401)
    everything = await auth.client.post(f"{API}/sessions/revoke-all", headers=headers)
    assert everything.json() == {"revoked": 1}
    assert_problem(await auth.client.get(f"{API}/me", headers=headers), 401)
    assert (await auth.client.get(f"{API}/me", headers=bearer(bob["access_token"]))).status_code == 200


# -- keys -------------------------------------------------------------------------------------------


async def test_keys_are_persisted_in_the_secret_store(start_auth: Callable[..., Any], tmp_path: Path) -> None:
    first: Auth = await start_auth()
    stored = tmp_path / "data" / "secrets" / "auth" / "signing-keys.json"
    assert stored.exists() and stored.stat().st_mode & 0o077 == 0
    second: Auth = await start_auth()  # another instance (or a restart) with the same store
    assert second.rt.keys.active_kid == first.rt.keys.active_kid
    tokens, _ = await first.user("alice")
    async with other_service(second) as other:  # verified against the other instance's JWKS
        assert (await other.get("/whoami", headers=bearer(tokens["access_token"]))).status_code == 200


async def test_rotation_keeps_old_tokens_valid_until_they_expire(start_auth: Callable[..., Any]) -> None:
    auth: Auth = await start_auth(rotate_after=86400, key_overlap=1200)
    peer: Auth = await start_auth(rotate_after=86400, key_overlap=1200)  # a second instance, same store
    clock = FakeClock(time.time())
    auth.rt.set_clock(clock)
    old_tokens, _ = await auth.user("alice")
    old_kid = auth.rt.keys.active_kid

    await auth.rt.keys.tick()
    assert auth.rt.keys.active_kid == old_kid  # not due yet
    clock.advance(86400)
    await auth.rt.keys.tick()  # what the background job does each key_refresh_interval
    new_kid = auth.rt.keys.active_kid
    assert new_kid != old_kid
    clock.now = time.time()
    new_tokens = await auth.login("alice")
    assert jwt.get_unverified_header(new_tokens["access_token"])["kid"] == new_kid

    # The new key was published before it signed anything: the peer's JWKS had it even before re-reading.
    assert new_kid in {k["kid"] for k in peer.rt.keys.jwks()["keys"]}
    async with other_service(peer) as other:
        for token in (old_tokens["access_token"], new_tokens["access_token"]):
            assert (await other.get("/whoami", headers=bearer(token))).status_code == 200
    await peer.rt.keys.refresh()
    assert peer.rt.keys.active_kid == new_kid

    # The old key stays published until every token it signed has expired ...
    retired_at = next(k.retired_at for k in auth.rt.keys.keyset.retired if k.kid == old_kid)
    assert retired_at is not None
    clock.now = retired_at + auth.rt.settings.access_token_ttl + 60
    async with other_service(auth) as other:
        assert (await other.get("/whoami", headers=bearer(old_tokens["access_token"]))).status_code == 200
    # ... and disappears after the overlap, so nothing it signed verifies any more.
    clock.now = retired_at + 1201
    assert old_kid not in {k["kid"] for k in (await auth.client.get(f"{API}/.well-known/jwks.json")).json()["keys"]}
    async with other_service(auth) as other:
        assert_problem(await other.get("/whoami", headers=bearer(old_tokens["access_token"])), 401)


def test_overlap_must_cover_token_lifetime() -> None:
    from quark_auth.settings import AuthSettings
    from quark_sdk.config import ConfigError

    with pytest.raises(ConfigError, match="key_overlap"):
        AuthSettings.load(access_token_ttl=900, key_overlap=600)
    with pytest.raises(ConfigError, match="bcrypt_rounds"):
        AuthSettings.load(env="prod", bcrypt_rounds=10)


async def test_email_verified_claim_changes_at_the_next_refresh(auth: Auth) -> None:
    """The SDK's WritingUser policy reads `email_verified` from the token: false until the address is
    verified, true from the next refresh after it (no new login needed). Without a verified phone,
    `phone_number_verified` is false."""
    tokens, _ = await auth.user("alice")
    claims = jwt.decode(tokens["access_token"], options={"verify_signature": False})
    assert claims["email_verified"] is False and claims["phone_number_verified"] is False
    token = (await auth.emails("verify_email"))[-1]["token"]
    assert (await auth.client.post(f"{API}/verify-email/confirm", json={"token": token})).status_code == 204
    refreshed = await auth.client.post(f"{API}/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert refreshed.status_code == 200, refreshed.text
    assert jwt.decode(refreshed.json()["access_token"], options={"verify_signature": False})["email_verified"] is True
