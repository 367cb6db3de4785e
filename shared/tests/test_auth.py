"""Token signing, JWKS caching/rotation and the FastAPI auth dependencies.

The issuers' JWKS are served by a real ASGI app over httpx.ASGITransport; the JWKS
cache runs on a fake clock, so TTL and rate limiting are exercised without sleeping.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi import Depends, FastAPI, WebSocket
from fastapi.responses import JSONResponse
from starlette.websockets import WebSocketDisconnect

# Own section whether or not ruff is told quark_sdk is first-party:
# isort: split
from quark_sdk.auth import (
    CurrentUser,
    JWKSCache,
    OptionalUser,
    Principal,
    SigningKey,
    SigningKeySet,
    TokenVerifier,
    authenticate_token,
    install_token_verifier,
    require_role,
    require_scope,
)
from quark_sdk.errors import Unauthenticated, install_error_handlers

OVERLAP = 3600.0
TTL = 300.0


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Issuers:
    """The auth service and the hub, as far as a verifier can see them: key sets and JWKS URLs."""

    auth: SigningKeySet
    hub: SigningKeySet
    fetches: dict[str, int] = field(default_factory=lambda: {"auth": 0, "hub": 0})
    down: bool = False
    extra_auth_keys: list[dict[str, Any]] = field(default_factory=list)

    def jwks_app(self) -> FastAPI:
        app = FastAPI()

        async def serve(name: str, keys: SigningKeySet, extra: list[dict[str, Any]]) -> Any:
            self.fetches[name] += 1
            await asyncio.sleep(0)  # yield, so concurrent verifiers really overlap with the fetch
            if self.down:
                return JSONResponse({"detail": "down"}, status_code=503)
            body = keys.jwks()
            body["keys"].extend(extra)
            return body

        @app.get("/auth/jwks.json")
        async def auth_jwks() -> Any:
            return await serve("auth", self.auth, self.extra_auth_keys)

        @app.get("/hub/jwks.json")
        async def hub_jwks() -> Any:
            return await serve("hub", self.hub, [])

        return app

    def user_token(self, *, roles: tuple[str, ...] = ("user",), key: SigningKey | None = None, **claims: Any) -> str:
        now = int(time.time())
        payload: dict[str, Any] = {
            "sub": str(uuid.uuid4()),
            "username": "alice",
            "roles": list(roles),
            "permissions": ["notes.read"],
            "iat": now,
            "exp": now + 900,
            "iss": "quark-auth",
            "aud": "quark",
            "jti": uuid.uuid4().hex,
        }
        payload.update(claims)
        return (key or self.auth.active).sign(payload)

    def service_token(self, scopes: tuple[str, ...], **claims: Any) -> str:
        now = int(time.time())
        payload: dict[str, Any] = {
            "sub": "notes",
            "scope": " ".join(scopes),
            "token_use": "service",
            "iat": now,
            "exp": now + 300,
            "iss": "quark-hub",
            "aud": "quark",
            "jti": uuid.uuid4().hex,
        }
        payload.update(claims)
        return self.hub.sign(payload)


@dataclass
class Env:
    issuers: Issuers
    clock: FakeClock
    auth_cache: JWKSCache
    hub_cache: JWKSCache
    app: FastAPI
    client: httpx.AsyncClient

    async def get(self, path: str, token: str | None = None, **headers: str) -> httpx.Response:
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        return await self.client.get(path, headers=headers)


def principal_json(p: Principal | None) -> dict[str, Any] | None:
    if p is None:
        return None
    return {
        "subject": p.subject,
        "kind": p.kind,
        "username": p.username,
        "roles": sorted(p.roles),
        "scopes": sorted(p.scopes),
        "token_id": p.token_id,
    }


def build_app(verifier: TokenVerifier) -> FastAPI:
    app = FastAPI()
    install_error_handlers(app)
    install_token_verifier(app, verifier)

    @app.get("/me")
    async def me(user: CurrentUser) -> Any:
        return principal_json(user)

    @app.get("/maybe")
    async def maybe(user: OptionalUser) -> Any:
        return {"user": principal_json(user)}

    @app.get("/moderate")
    async def moderate(user: Annotated[Principal, Depends(require_role("moderator"))]) -> Any:
        return principal_json(user)

    @app.get("/admin")
    async def admin(user: Annotated[Principal, Depends(require_role("admin"))]) -> Any:
        return principal_json(user)

    @app.get("/internal/notes")
    async def internal(svc: Annotated[Principal, Depends(require_scope("notes:read", "notes:write"))]) -> Any:
        return principal_json(svc)

    return app


@pytest.fixture
def issuers() -> Issuers:
    return Issuers(auth=SigningKeySet.generate(overlap=OVERLAP), hub=SigningKeySet.generate(overlap=OVERLAP))


@pytest.fixture
async def make_env(issuers: Issuers) -> AsyncIterator[Callable[..., Env]]:
    clients: list[httpx.AsyncClient] = []

    def make(*, min_refresh_interval: float = 0, audience: str = "quark") -> Env:
        clock = FakeClock()
        jwks_client = httpx.AsyncClient(transport=httpx.ASGITransport(app=issuers.jwks_app()), base_url="http://jwks")
        auth_cache = JWKSCache(
            "http://jwks/auth/jwks.json", client=jwks_client, ttl=TTL,
            min_refresh_interval=min_refresh_interval, clock=clock,
        )
        hub_cache = JWKSCache(
            "http://jwks/hub/jwks.json", client=jwks_client, ttl=TTL,
            min_refresh_interval=min_refresh_interval, clock=clock,
        )
        verifier = TokenVerifier({"quark-auth": auth_cache, "quark-hub": hub_cache}, audience=audience)
        app = build_app(verifier)
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")
        clients.extend([jwks_client, client])
        return Env(issuers, clock, auth_cache, hub_cache, app, client)

    yield make
    for c in clients:
        await c.aclose()


@pytest.fixture
def env(make_env: Callable[..., Env]) -> Env:
    return make_env()


def assert_problem(resp: httpx.Response, status: int, reason: str, *, token: str | None = None) -> None:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/problem+json")
    body = resp.json()
    assert body["status"] == status
    assert reason in body["detail"], body
    if status == 401:
        assert resp.headers["www-authenticate"] == "Bearer"
    if token:
        assert token not in resp.text  # never echo the credential


def unsigned(claims: dict[str, Any], header: dict[str, Any]) -> str:
    """A token with an arbitrary header and no signature (for alg=none)."""

    def b64(obj: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    return f"{b64(header)}.{b64(claims)}."


# -- happy path and caching -----------------------------------------------------------------


async def test_good_user_token_and_one_fetch_for_many_requests(env: Env) -> None:
    token = env.issuers.user_token(roles=("moderator",))
    for _ in range(20):
        resp = await env.get("/me", token)
        assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["kind"] == "user"
    assert body["username"] == "alice"
    assert body["roles"] == ["moderator"]
    assert body["token_id"]
    # Twenty verifications, one JWKS fetch; the hub's JWKS was never needed.
    assert env.issuers.fetches == {"auth": 1, "hub": 0}


async def test_cache_refetches_after_ttl(env: Env) -> None:
    token = env.issuers.user_token()
    assert (await env.get("/me", token)).status_code == 200
    env.clock.advance(TTL - 1)
    assert (await env.get("/me", token)).status_code == 200
    assert env.issuers.fetches["auth"] == 1
    env.clock.advance(2)
    assert (await env.get("/me", token)).status_code == 200
    assert env.issuers.fetches["auth"] == 2


async def test_concurrent_verifications_share_one_fetch(env: Env) -> None:
    token = env.issuers.user_token()
    results = await asyncio.gather(*(env.get("/me", token) for _ in range(10)))
    assert [r.status_code for r in results] == [200] * 10
    assert env.issuers.fetches["auth"] == 1


async def test_rs256_issuer_is_accepted(make_env: Callable[..., Env], issuers: Issuers) -> None:
    issuers.auth = SigningKeySet.generate("RS256")
    env = make_env()
    resp = await env.get("/me", issuers.user_token())
    assert resp.status_code == 200, resp.text
    jwk = issuers.auth.jwks()["keys"][0]
    assert (jwk["kty"], jwk["alg"], jwk["use"]) == ("RSA", "RS256", "sig")


# -- rejections -----------------------------------------------------------------------------


def _bad_tokens(iss: Issuers) -> dict[str, tuple[str, str]]:
    now = int(time.time())
    active = iss.auth.active
    base = {"sub": "u1", "iss": "quark-auth", "aud": "quark", "iat": now, "exp": now + 600}
    public_jwk = active.to_public_jwk()
    return {
        "bad signature": (
            iss.user_token(key=SigningKey.generate(kid=active.kid)),  # another key, same kid
            "token signature invalid",
        ),
        "wrong audience": (iss.user_token(aud="billing"), "token audience invalid"),
        "no audience": (active.sign({k: v for k, v in base.items() if k != "aud"}), "token audience invalid"),
        "expired": (iss.user_token(iat=now - 1000, exp=now - 100), "token expired"),
        "not yet valid": (iss.user_token(nbf=now + 600), "token not yet valid"),
        "unknown kid": (iss.user_token(key=SigningKey.generate(kid="no-such-kid")), "unknown signing key"),
        "alg none": (unsigned(base, {"alg": "none", "typ": "JWT", "kid": active.kid}), "token algorithm not allowed"),
        "alg HS256 with the public key as secret": (
            jwt.encode(base, public_jwk["x"], algorithm="HS256", headers={"kid": active.kid}),
            "token algorithm not allowed",
        ),
        "alg mismatch with key": (
            unsigned(base, {"alg": "RS256", "typ": "JWT", "kid": active.kid}) + "AAAA",
            "token algorithm not allowed",
        ),
        "no kid": (jwt.encode(base, active.private_key, algorithm="EdDSA"), "token has no key id"),
        "garbage": ("this-is-not-a-jwt", "token malformed"),
        "garbage segments": ("abc.def.ghi", "token malformed"),
        "unknown issuer": (iss.user_token(iss="evil-corp"), "token issuer unknown"),
        "no exp": (
            jwt.encode({k: v for k, v in base.items() if k != "exp"}, active.private_key, algorithm="EdDSA",
                       headers={"kid": active.kid}),
            "token missing required claim 'exp'",
        ),
        "refresh token": (iss.user_token(token_use="refresh"), "token type not accepted"),
        "permissions not a list": (iss.user_token(permissions={"admin": True}), "token claim 'permissions' invalid"),
        "hub key for auth issuer": (
            iss.hub.sign(base),  # signed by the hub's key but claims iss=quark-auth
            "unknown signing key",
        ),
        # The verifier checks claims itself (not through jwt.decode): pin the edges PyJWT covered.
        "critical header extension": (
            _resigned(active, {"alg": "EdDSA", "typ": "JWT", "kid": active.kid, "crit": ["exp"]}, base),
            "token malformed",
        ),
        "issued in the future": (iss.user_token(iat=now + 600), "token not yet valid"),
        "iat not a number": (iss.user_token(iat="yesterday"), "token issued-at invalid"),
        "exp not a number": (iss.user_token(exp="later"), "token malformed"),
        "nbf not a number": (iss.user_token(nbf=True), "token malformed"),
        "audience list of non-strings": (iss.user_token(aud=[1, "quark"]), "token audience invalid"),
        "audience list without ours": (iss.user_token(aud=["billing", "mail"]), "token audience invalid"),
        "jti not a string": (iss.user_token(jti=7), "token invalid"),
        "padded segments": (iss.user_token() + "==", "token malformed"),
        "claims not an object": (_resigned(active, {"alg": "EdDSA", "typ": "JWT", "kid": active.kid}, [base]),
                                 "token malformed"),
    }


def _resigned(key: SigningKey, header: dict[str, Any], payload: Any) -> str:
    """A correctly signed token with any header and payload (jwt.encode would refuse some of them)."""
    def seg(data: Any) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    signing_input = f"{seg(header)}.{seg(payload)}"
    assert isinstance(key.private_key, Ed25519PrivateKey)
    signature = base64.urlsafe_b64encode(key.private_key.sign(signing_input.encode())).rstrip(b"=").decode()
    return f"{signing_input}.{signature}"


BAD_CASES = [
    "bad signature", "wrong audience", "no audience", "expired", "not yet valid", "unknown kid", "alg none",
    "alg HS256 with the public key as secret", "alg mismatch with key", "no kid", "garbage", "garbage segments",
    "unknown issuer", "no exp", "refresh token", "permissions not a list", "hub key for auth issuer",
    "critical header extension", "issued in the future", "iat not a number", "exp not a number", "nbf not a number",
    "audience list of non-strings", "audience list without ours", "jti not a string", "padded segments",
    "claims not an object",
]


@pytest.mark.parametrize("case", BAD_CASES)
async def test_bad_tokens_are_401_problems(env: Env, case: str) -> None:
    token, reason = _bad_tokens(env.issuers)[case]
    # Warm the cache with a good token so "unknown kid" also proves the refresh-then-fail path.
    assert (await env.get("/me", env.issuers.user_token())).status_code == 200
    resp = await env.get("/me", token)
    assert_problem(resp, 401, reason, token=token)


async def test_unknown_kid_refreshes_once_then_fails(make_env: Callable[..., Env]) -> None:
    env = make_env(min_refresh_interval=5)
    assert (await env.get("/me", env.issuers.user_token())).status_code == 200
    forged = env.issuers.user_token(key=SigningKey.generate(kid="forged"))
    assert_problem(await env.get("/me", forged), 401, "unknown signing key")
    assert env.issuers.fetches["auth"] == 1  # the last fetch was under 5 s ago: no refresh yet
    env.clock.advance(5)
    for _ in range(5):
        assert_problem(await env.get("/me", forged), 401, "unknown signing key")
    # One refresh for the unknown kid; the rest are rate limited.
    assert env.issuers.fetches["auth"] == 2
    env.clock.advance(5)
    assert_problem(await env.get("/me", forged), 401, "unknown signing key")
    assert env.issuers.fetches["auth"] == 3


async def test_missing_and_malformed_authorization_header(env: Env) -> None:
    assert_problem(await env.get("/me"), 401, "bearer token required")
    token = env.issuers.user_token()
    resp = await env.client.get("/me", headers={"Authorization": f"Basic {token}"})
    assert_problem(resp, 401, "Bearer <token>", token=token)
    assert_problem(await env.client.get("/me", headers={"Authorization": "Bearer"}), 401, "Bearer <token>")
    assert env.issuers.fetches["auth"] == 0  # rejected before any key lookup


async def test_optional_user(env: Env) -> None:
    assert (await env.get("/maybe")).json() == {"user": None}
    good = await env.get("/maybe", env.issuers.user_token())
    assert good.json()["user"]["kind"] == "user"
    assert_problem(await env.get("/maybe", "garbage"), 401, "token malformed")


async def test_key_set_unavailable(env: Env) -> None:
    env.issuers.down = True
    assert_problem(await env.get("/me", env.issuers.user_token()), 401, "cannot verify token: key set unavailable")


async def test_stale_keys_served_when_refresh_fails(env: Env) -> None:
    token = env.issuers.user_token()
    assert (await env.get("/me", token)).status_code == 200
    env.issuers.down = True
    env.clock.advance(TTL + 1)
    assert (await env.get("/me", token)).status_code == 200  # refresh failed, stale keys still verify
    assert env.issuers.fetches["auth"] == 2


# -- rotation -------------------------------------------------------------------------------


async def test_rotation_overlap_and_prune(env: Env) -> None:
    keys = env.issuers.auth
    old_token = env.issuers.user_token()
    assert (await env.get("/me", old_token)).status_code == 200
    assert env.issuers.fetches["auth"] == 1

    old_kid = keys.active.kid
    t0 = time.time()
    new_key = keys.rotate(now=t0)
    assert new_key.kid != old_kid and keys.active is new_key
    assert keys.retired[0].kid == old_kid and keys.retired[0].retired_at == t0
    assert {k["kid"] for k in keys.jwks()["keys"]} == {old_kid, new_key.kid}

    new_token = env.issuers.user_token()
    assert jwt.get_unverified_header(new_token)["kid"] == new_key.kid
    assert (await env.get("/me", new_token)).status_code == 200  # unknown kid -> exactly one refresh
    assert env.issuers.fetches["auth"] == 2
    for token in (old_token, new_token, old_token):
        assert (await env.get("/me", token)).status_code == 200
    assert env.issuers.fetches["auth"] == 2

    # A scheduled refresh during the overlap still publishes the old key.
    env.clock.advance(TTL + 1)
    assert (await env.get("/me", old_token)).status_code == 200
    assert env.issuers.fetches["auth"] == 3

    # Past the overlap: pruned, gone from the JWKS, and (once caches refresh) no longer verifying.
    keys.prune(now=t0 + OVERLAP + 1)
    assert keys.retired == ()
    assert [k["kid"] for k in keys.jwks()["keys"]] == [new_key.kid]
    env.clock.advance(TTL + 1)
    assert_problem(await env.get("/me", old_token), 401, "unknown signing key")
    assert (await env.get("/me", new_token)).status_code == 200


def test_jwks_hides_keys_past_overlap_even_without_prune() -> None:
    keys = SigningKeySet.generate(overlap=60, now=0)
    old = keys.active.kid
    keys.rotate(now=100)
    assert {k["kid"] for k in keys.jwks(now=159)["keys"]} == {old, keys.active.kid}
    assert {k["kid"] for k in keys.jwks(now=160)["keys"]} == {keys.active.kid}


def test_key_set_round_trips_through_secret_store() -> None:
    keys = SigningKeySet.generate(overlap=120)
    keys.rotate()
    stored = keys.to_dict()
    assert "PRIVATE KEY" in stored["active"]["private_key_pem"]
    restored = SigningKeySet.from_dict(stored)
    assert restored.active.kid == keys.active.kid
    assert [k.kid for k in restored.retired] == [k.kid for k in keys.retired]
    assert restored.overlap == 120
    assert restored.jwks() == keys.jwks()
    # A token signed by the restored set verifies with the original public key.
    token = restored.sign({"sub": "x", "exp": int(time.time()) + 60})
    jwk = jwt.PyJWK(keys.active.to_public_jwk())
    assert jwt.decode(token, jwk, algorithms=["EdDSA"])["sub"] == "x"


def test_public_jwk_has_no_private_material() -> None:
    algs: tuple[Literal["EdDSA", "RS256"], ...] = ("EdDSA", "RS256")
    for alg in algs:
        key = SigningKey.generate(alg)
        jwk = key.to_public_jwk()
        assert not {"d", "p", "q", "dp", "dq", "qi"} & jwk.keys()
        assert jwk["kid"] == key.kid and jwk["use"] == "sig" and jwk["alg"] == alg
        assert "private" not in repr(key).lower()
        assert SigningKey.from_dict(key.to_dict()).to_public_jwk() == jwk


def test_sign_requires_exp() -> None:
    with pytest.raises(ValueError, match="exp"):
        SigningKeySet.generate().sign({"sub": "x"})


async def test_symmetric_keys_in_jwks_are_ignored(env: Env) -> None:
    secret = base64.urlsafe_b64encode(b"s" * 32).rstrip(b"=").decode()
    env.issuers.extra_auth_keys.append({"kty": "oct", "kid": "hmac", "k": secret, "alg": "HS256"})
    assert (await env.get("/me", env.issuers.user_token())).status_code == 200
    assert env.auth_cache.kids == {env.issuers.auth.active.kid}


# -- roles and scopes -----------------------------------------------------------------------


def test_role_hierarchy() -> None:
    admin = Principal(subject="a", kind="user", roles=frozenset({"admin"}))
    mod = Principal(subject="m", kind="user", roles=frozenset({"moderator"}))
    user = Principal(subject="u", kind="user", roles=frozenset({"user"}))
    assert all(admin.has_role(r) for r in ("admin", "moderator", "user"))
    assert mod.has_role("moderator") and mod.has_role("user") and not mod.has_role("admin")
    assert user.has_role("user") and not user.has_role("moderator")
    assert not admin.has_role("auditor")  # unknown roles only match exactly
    assert Principal(subject="x", kind="user", roles=frozenset({"auditor"})).has_role("auditor")


async def test_require_role(env: Env) -> None:
    iss = env.issuers
    assert (await env.get("/moderate", iss.user_token(roles=("admin",)))).status_code == 200
    assert (await env.get("/moderate", iss.user_token(roles=("moderator",)))).status_code == 200
    assert_problem(await env.get("/moderate", iss.user_token(roles=("user",))), 403, "requires role moderator")
    assert_problem(await env.get("/admin", iss.user_token(roles=("moderator",))), 403, "requires role admin")
    service = iss.service_token(("notes:read",))
    assert_problem(await env.get("/moderate", service), 403, "user token is required")
    assert_problem(await env.get("/moderate"), 401, "bearer token required")


async def test_require_scope(env: Env) -> None:
    iss = env.issuers
    resp = await env.get("/internal/notes", iss.service_token(("notes:read", "notes:write", "users:read")))
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["kind"] == "service" and body["subject"] == "notes" and body["username"] is None
    assert_problem(await env.get("/internal/notes", iss.service_token(("notes:read",))), 403,
                   "missing scope notes:write")
    assert_problem(await env.get("/internal/notes", iss.user_token(roles=("admin",))), 403,
                   "service token is required")
    # The hub's audience claim is checked like any other.
    assert_problem(await env.get("/internal/notes", iss.service_token(("notes:read",), aud="billing")), 401,
                   "token audience invalid")
    assert env.issuers.fetches["hub"] == 1


async def test_verifier_accepts_any_configured_audience(make_env: Callable[..., Env], issuers: Issuers) -> None:
    env = make_env()
    verifier = TokenVerifier({"quark-auth": env.auth_cache}, audience=["quark", "billing"])
    principal = await verifier.verify(issuers.user_token(aud="billing"))
    assert principal.kind == "user" and principal.permissions == {"notes.read"}


# -- WebSocket-style authentication -----------------------------------------------------------


async def test_authenticate_token_for_websockets(env: Env) -> None:
    token = env.issuers.user_token(roles=("admin",))
    by_app = await authenticate_token(env.app, token)
    by_state = await authenticate_token(env.app.state, f"Bearer {token}")
    assert by_app == by_state and by_app.has_role("moderator")
    assert by_app.claims["iss"] == "quark-auth"
    with pytest.raises(Unauthenticated, match="bearer token required"):
        await authenticate_token(env.app, "")
    with pytest.raises(Unauthenticated, match="token expired"):
        await authenticate_token(env.app, env.issuers.user_token(exp=int(time.time()) - 100))
    with pytest.raises(RuntimeError, match="install_token_verifier"):
        await authenticate_token(FastAPI(), token)


def test_factories_need_arguments() -> None:
    with pytest.raises(ValueError):
        require_role()
    with pytest.raises(ValueError):
        require_scope()


@pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient` is deprecated")
def test_websocket_routes(issuers: Issuers) -> None:
    """Header auth works on WebSocket routes too; browsers send the token in the first message instead."""
    from fastapi.testclient import TestClient  # imported here so the mark below covers its import warning

    jwks_client = httpx.AsyncClient(transport=httpx.ASGITransport(app=issuers.jwks_app()), base_url="http://jwks")
    verifier = TokenVerifier({"quark-auth": JWKSCache("http://jwks/auth/jwks.json", client=jwks_client)})
    app = build_app(verifier)

    @app.websocket("/ws/header")
    async def ws_header(websocket: WebSocket, user: CurrentUser) -> None:
        await websocket.accept()
        await websocket.send_json({"sub": user.subject})
        await websocket.close()

    @app.websocket("/ws/message")
    async def ws_message(websocket: WebSocket) -> None:
        await websocket.accept()
        try:
            user = await authenticate_token(websocket.app, await websocket.receive_text())
        except Unauthenticated as exc:
            await websocket.close(code=4401, reason=exc.detail)
            return
        await websocket.send_json({"sub": user.subject})
        await websocket.close()

    token = issuers.user_token(sub="ws-user")
    with TestClient(app) as client:
        with client.websocket_connect("/ws/header", headers={"Authorization": f"Bearer {token}"}) as ws:
            assert ws.receive_json() == {"sub": "ws-user"}
        with client.websocket_connect("/ws/message") as ws:
            ws.send_text(token)
            assert ws.receive_json() == {"sub": "ws-user"}
        with client.websocket_connect("/ws/message") as ws:
            ws.send_text("garbage")
            with pytest.raises(WebSocketDisconnect) as closed:
                ws.receive_json()
            assert (closed.value.code, closed.value.reason) == (4401, "token malformed")
        with pytest.raises(WebSocketDisconnect), client.websocket_connect("/ws/header") as ws:
            ws.receive_json()  # no header: the dependency's 401 refuses the handshake
    asyncio.run(jwks_client.aclose())
