"""Service identity: client credentials → hub-signed service JWT that the SDK's require_scope accepts."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import httpx
import jwt
from fastapi import Depends, FastAPI
from hub_testkit import manifest, register, start_hub

from quark_sdk.auth import JWKSCache, Principal, TokenVerifier, install_token_verifier, require_scope
from quark_sdk.errors import install_error_handlers
from quark_sdk.testing import QuarkTestEnv, RunningModule

TOKEN = "/api/v1/hub/token"
CLIENTS = "/api/v1/hub/clients"


def basic(client_id: str, secret: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()}


async def provision(quark: QuarkTestEnv, svc: RunningModule, client_id: str, **body: Any) -> str:
    resp = await svc.client.post(CLIENTS, json={"client_id": client_id, **body},
                                 headers=quark.bearer(quark.user_token(roles=("admin",))))
    assert resp.status_code == 201, resp.text
    secret: str = resp.json()["client_secret"]
    return secret


async def token(svc: RunningModule, **form: str) -> httpx.Response:
    return await svc.client.post(TOKEN, data={"grant_type": "client_credentials", **form})


async def test_token_is_accepted_by_require_scope_end_to_end(quark: QuarkTestEnv, tmp_path: Path) -> None:
    svc = await start_hub(quark, tmp_path, token_ttl=120)
    await register(svc, manifest("blog", scopes=["posts:read", "users:read"]), "http://127.0.5.4:3004")
    secret = await provision(quark, svc, "blog")

    resp = await token(svc, client_id="blog", client_secret=secret, scope="users:read admin:everything")
    assert resp.status_code == 200, resp.text
    assert resp.headers["cache-control"] == "no-store"
    body = resp.json()
    assert body["token_type"] == "Bearer" and body["expires_in"] == 120 and body["scope"] == "users:read"
    claims = jwt.decode(body["access_token"], options={"verify_signature": False})
    assert claims["iss"] == "quark-hub" and claims["sub"] == "blog" and claims["aud"] == "quark"
    assert claims["token_use"] == "service" and claims["scope"] == "users:read"
    assert claims["exp"] - claims["iat"] == 120

    # Another service verifies it the way every Quark service does: JWKS fetched over HTTP, cached.
    jwks_client = httpx.AsyncClient(transport=httpx.ASGITransport(app=svc.app), base_url="http://hub")
    other = FastAPI()
    install_error_handlers(other)
    install_token_verifier(other, TokenVerifier(
        {"quark-hub": JWKSCache("http://hub/api/v1/hub/.well-known/jwks.json", client=jwks_client)}))

    @other.get("/users")
    async def users(principal: Principal = Depends(require_scope("users:read"))) -> dict[str, str]:
        return {"caller": principal.subject}

    @other.get("/admin")
    async def admin(principal: Principal = Depends(require_scope("admin:everything"))) -> dict[str, str]:
        return {"caller": principal.subject}

    async with jwks_client, httpx.AsyncClient(transport=httpx.ASGITransport(app=other), base_url="http://o") as c:
        auth = {"Authorization": f"Bearer {body['access_token']}"}
        ok = await c.get("/users", headers=auth)
        assert ok.status_code == 200 and ok.json() == {"caller": "blog"}
        assert (await c.get("/admin", headers=auth)).status_code == 403
        # A token from another key (same claims) is refused.
        forged = quark.service_token("blog", ("users:read",))
        assert (await c.get("/users", headers={"Authorization": f"Bearer {forged}"})).status_code == 401

    jwks = (await svc.client.get("/api/v1/hub/.well-known/jwks.json")).json()
    header = jwt.get_unverified_header(body["access_token"])
    assert header["kid"] in {k["kid"] for k in jwks["keys"]} and header["alg"] == "EdDSA"
    assert all("d" not in k for k in jwks["keys"])  # public keys only


async def test_scopes_basic_auth_and_audience(quark: QuarkTestEnv, tmp_path: Path) -> None:
    svc = await start_hub(quark, tmp_path)
    await register(svc, manifest("blog", scopes=["posts:read", "users:read"]), "http://127.0.5.4:3004")
    secret = await provision(quark, svc, "blog")
    fixed = await provision(quark, svc, "media", scopes=["media:write"])

    everything = await svc.client.post(TOKEN, data={"grant_type": "client_credentials"}, headers=basic("blog", secret))
    assert everything.status_code == 200 and everything.json()["scope"] == "posts:read users:read"
    assert (await token(svc, client_id="media", client_secret=fixed)).json()["scope"] == "media:write"

    aud = await token(svc, client_id="media", client_secret=fixed, audience="blog")  # a module the hub knows
    assert jwt.decode(aud.json()["access_token"], options={"verify_signature": False})["aud"] == "blog"

    for form, headers, status, error in (
        ({"scope": "admin:everything"}, None, 400, "invalid_scope"),
        ({"scope": "NOT VALID!"}, None, 400, "invalid_scope"),
        ({"audience": "the-moon"}, None, 400, "invalid_target"),
        ({"grant_type": "password"}, None, 400, "unsupported_grant_type"),
        ({}, basic("blog", secret), 400, "invalid_request"),  # two authentication methods
    ):
        data = {"grant_type": "client_credentials", "client_id": "blog", "client_secret": secret, **form}
        resp = await svc.client.post(TOKEN, data=data, headers=headers)
        assert resp.status_code == status, (form, resp.text)
        assert resp.headers["content-type"] == "application/problem+json" and resp.json()["error"] == error


async def test_wrong_credentials_are_401_and_rate_limited(quark: QuarkTestEnv, tmp_path: Path) -> None:
    svc = await start_hub(quark, tmp_path, token_failure_limit=3)
    secret = await provision(quark, svc, "blog")
    admin = quark.bearer(quark.user_token(roles=("admin",)))
    clients_before = (await svc.client.get(CLIENTS, headers=admin)).json()
    attempts: list[tuple[dict[str, str], dict[str, str] | None]] = [
        ({"client_id": "blog", "client_secret": secret + "x"}, None),
        ({"client_id": "nobody", "client_secret": secret}, None),
        ({}, basic("blog", "wrong")),
    ]
    for form, headers in attempts:
        resp = await svc.client.post(TOKEN, data={"grant_type": "client_credentials", **form}, headers=headers)
        assert resp.status_code == 401, resp.text
        assert resp.headers["content-type"] == "application/problem+json"
        assert resp.json()["error"] == "invalid_client" and "www-authenticate" in resp.headers
        assert secret not in resp.text
    # The limit is reached: even the right secret waits now.
    limited = await token(svc, client_id="blog", client_secret=secret)
    assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1
    assert (await svc.client.get(CLIENTS, headers=admin)).json() == clients_before


async def test_malformed_token_requests_are_4xx(quark: QuarkTestEnv, tmp_path: Path) -> None:
    svc = await start_hub(quark, tmp_path, token_failure_limit=100)
    await provision(quark, svc, "blog")
    cases: list[dict[str, Any]] = [
        {"json": {"grant_type": "client_credentials"}},
        {"content": b"grant_type=client_credentials&grant_type=x", "headers": {"content-type":
                                                                               "application/x-www-form-urlencoded"}},
        {"content": b"\xff\xfe", "headers": {"content-type": "application/x-www-form-urlencoded"}},
        {"data": {"client_id": "blog"}},
        {"data": {"grant_type": "client_credentials"}},
        {"data": {"grant_type": "client_credentials"}, "headers": {"Authorization": "Basic %%%"}},
        {"data": {"grant_type": "client_credentials"}, "headers": {"Authorization": "Bearer abc"}},
        {"data": {"grant_type": "client_credentials", "client_id": "x" * 5000, "client_secret": "y"}},
    ]
    for kwargs in cases:
        resp = await svc.client.post(TOKEN, **kwargs)
        assert 400 <= resp.status_code < 500, (kwargs, resp.status_code, resp.text)
        assert resp.headers["content-type"] == "application/problem+json"


async def test_admin_endpoints(quark: QuarkTestEnv, tmp_path: Path) -> None:
    svc = await start_hub(quark, tmp_path)
    admin = quark.bearer(quark.user_token(roles=("admin",)))
    assert (await svc.client.post(CLIENTS, json={"client_id": "blog"})).status_code == 401
    user = quark.bearer(quark.user_token(roles=("user",)))
    assert (await svc.client.post(CLIENTS, json={"client_id": "blog"}, headers=user)).status_code == 403
    service = quark.bearer(quark.service_token("blog", ("hub:admin",)))
    assert (await svc.client.post(CLIENTS, json={"client_id": "blog"}, headers=service)).status_code == 403
    for bad, field in (({"client_id": "Bad Name"}, "client_id"), ({"client_id": "blog", "client_secret": "short"},
                                                                  "client_secret"),
                       ({"client_id": "blog", "scopes": ["Bad Scope"]}, "scopes")):
        resp = await svc.client.post(CLIENTS, json=bad, headers=admin)
        assert resp.status_code == 422 and resp.json()["errors"][0]["field"] == field
    assert (await svc.client.get(CLIENTS, headers=admin)).json() == {"items": []}

    created = await svc.client.post(CLIENTS, json={"client_id": "blog", "client_secret": "s" * 30}, headers=admin)
    assert created.status_code == 201 and created.json()["client_secret"] == "s" * 30
    assert (await svc.client.post(CLIENTS, json={"client_id": "blog"}, headers=admin)).status_code == 409
    listed = (await svc.client.get(CLIENTS, headers=admin)).json()["items"]
    assert [c["client_id"] for c in listed] == ["blog"] and "client_secret" not in json.dumps(listed)
    assert "secret_hash" not in json.dumps(listed)

    rotated = await svc.client.post(f"{CLIENTS}/blog/secret", headers=admin)
    assert rotated.status_code == 200
    new = rotated.json()["client_secret"]
    assert (await token(svc, client_id="blog", client_secret="s" * 30)).status_code == 401
    assert (await token(svc, client_id="blog", client_secret=new)).status_code == 200
    used = (await svc.client.get(CLIENTS, headers=admin)).json()["items"][0]
    assert used["last_used_at"] is not None

    assert (await svc.client.delete(f"{CLIENTS}/blog", headers=admin)).status_code == 204
    assert (await svc.client.delete(f"{CLIENTS}/blog", headers=admin)).status_code == 404
    assert (await svc.client.post(f"{CLIENTS}/nope/secret", headers=admin)).status_code == 404
    assert (await token(svc, client_id="blog", client_secret=new)).status_code == 401


async def test_dev_clients_and_keys_come_from_the_secret_store(quark: QuarkTestEnv, tmp_path: Path) -> None:
    secrets_dir = tmp_path / "hubdata" / "secrets" / "hub"
    secrets_dir.mkdir(parents=True)
    (secrets_dir / "clients.json").write_text(json.dumps({"blog": "blog-dev-secret-123456", "Bad Name": "x" * 20}))
    svc = await start_hub(quark, tmp_path)
    ok = await token(svc, client_id="blog", client_secret="blog-dev-secret-123456")
    assert ok.status_code == 200, ok.text
    # The keys were generated into the store at first start (private, 0600), and they sign the tokens.
    stored = secrets_dir / "signing-keys.json"
    assert stored.stat().st_mode & 0o777 == 0o600
    kid = json.loads(json.loads(stored.read_text())["keyset"])["active"]["kid"]
    assert jwt.get_unverified_header(ok.json()["access_token"])["kid"] == kid
    admin = quark.bearer(quark.user_token(roles=("admin",)))
    [client] = (await svc.client.get(CLIENTS, headers=admin)).json()["items"]
    assert client["client_id"] == "blog" and client["source"] == "secret-store"
