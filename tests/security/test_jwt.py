"""JWT negative suite (OWASP API2) against a protected endpoint of every service.

Every forged or misused token is refused with a 401 problem that does not echo the token; the
well-formed token of the same user gets past authentication. The auth service's own suite
(services/auth/tests/test_tokens.py::test_another_service_refuses_bad_tokens) runs the same kinds of
tokens through one other service; this one runs them through each service of the table.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from security_testkit import Running, ServiceSpec, assert_problem, b64, service_params, start, unb64

from quark_sdk.auth import SigningKey
from quark_sdk.testing import QuarkTestEnv


def hs256(header: dict[str, Any], claims: dict[str, Any], secret: bytes) -> str:
    """HMAC-sign by hand: PyJWT refuses to use a public key as an HMAC secret, an attacker would not."""
    signing_input = f"{b64(header)}.{b64(claims)}"
    sig = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(sig)}"


async def forged_tokens(svc: Running, user_id: str, good: str) -> dict[str, str]:
    """Name → token; each must be refused."""
    claims = svc.claims(user_id)
    kid = svc.trusted_kid()
    now = int(time.time())
    head, payload, sig = good.split(".")
    good_claims = unb64(payload)
    jwks = (await svc.client.get("/api/v1/auth/.well-known/jwks.json")).json() if svc.spec.own_tokens \
        else svc.quark.keys.jwks()
    public_jwk = next(k for k in jwks["keys"] if k["kid"] == kid)
    public_bytes = public_jwk.get("x", public_jwk.get("n", "")).encode()
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    rsa_pem = rsa_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
    flipped = sig[:-2] + ("AA" if sig[-2:] != "AA" else "BB")
    return {
        "alg none": f"{b64({'alg': 'none', 'typ': 'JWT', 'kid': kid})}.{b64(claims)}.",
        "alg None (case)": f"{b64({'alg': 'None', 'kid': kid})}.{b64(claims)}.",
        "HS256 keyed with the public JWK": hs256({"alg": "HS256", "typ": "JWT", "kid": kid}, claims, public_bytes),
        "HS256 keyed with the JWKS document": hs256({"alg": "HS256", "kid": kid}, claims,
                                                    str(jwks).encode()),
        "RS256 by a foreign key with the trusted kid": jwt.encode(claims, rsa_pem, algorithm="RS256",
                                                                  headers={"kid": kid}),
        "EdDSA by a foreign key with the trusted kid": SigningKey.generate(kid=kid).sign(claims),
        "unknown kid": SigningKey.generate().sign(claims),
        "no kid": jwt.encode(claims, rsa_pem, algorithm="RS256"),
        "expired": svc.sign(svc.claims(user_id, iat=now - 7200, exp=now - 3600)),
        "not yet valid": svc.sign(svc.claims(user_id, nbf=now + 3600)),
        "no exp": svc.sign_raw({k: v for k, v in claims.items() if k != "exp"}),
        "wrong aud": svc.sign(svc.claims(user_id, aud="another-station")),
        "no aud": svc.sign({k: v for k, v in claims.items() if k != "aud"}),
        "wrong iss": svc.sign(svc.claims(user_id, iss="evil-issuer")),
        "hub issuer on a user token": svc.sign(svc.claims(user_id, iss="quark-hub")),
        "typ refresh": svc.sign(svc.claims(user_id, token_use="refresh")),
        "typ mfa challenge": svc.sign(svc.claims(user_id, token_use="mfa")),
        "service token claims from the user issuer": svc.sign(svc.claims(user_id, token_use="service")),
        "tampered signature": f"{head}.{payload}.{flipped}",
        "tampered payload (roles=admin)": f"{head}.{b64({**good_claims, 'roles': ['admin']})}.{sig}",
        "tampered header (alg=HS256)": f"{b64({**unb64(head), 'alg': 'HS256'})}.{payload}.{sig}",
        "garbage": "not.a.jwt",
        "empty segments": "..",
    }


@pytest.mark.parametrize("spec", service_params())
async def test_forged_and_misused_tokens_are_refused(spec: ServiceSpec, quark: QuarkTestEnv,
                                                     tmp_path: Path) -> None:
    svc = await start(quark, spec, tmp_path)
    user = await svc.user()
    good = await svc.client.get(spec.protected, headers=user.headers)
    assert good.status_code != 401, good.text  # the well-formed token gets past authentication

    tokens = await forged_tokens(svc, user.id, user.token)
    if spec.own_tokens:  # a real refresh token, and an access token signed by auth but with no live session
        tokens["refresh token as access token"] = (await svc.login(user.username))["refresh_token"]
        tokens["valid signature, no session"] = svc.sign(svc.claims(user.id, sid="00000000-0000-0000-0000-0000"))
    for name, token in tokens.items():
        resp = await svc.client.get(spec.protected, headers={"Authorization": f"Bearer {token}"})
        problem = assert_problem(resp, 401)
        assert token not in resp.text, name
        assert resp.headers.get("www-authenticate", "").lower().startswith("bearer"), name
        assert "Traceback" not in problem["detail"]
    # Schemes other than Bearer and a missing header are 401 too.
    for header in ({}, {"Authorization": f"Basic {user.token}"}, {"Authorization": "Bearer"},
                   {"Authorization": f"Token {user.token}"}):
        assert_problem(await svc.client.get(spec.protected, headers=header), 401)


@pytest.mark.parametrize("spec", [p for p in service_params() if p.values[0].name != "auth"])
async def test_service_token_is_not_a_user(spec: ServiceSpec, quark: QuarkTestEnv, tmp_path: Path) -> None:
    """A hub-issued service token (valid for service-to-service calls) never stands in for a user."""
    svc = await start(quark, spec, tmp_path)
    token = quark.service_token("blog", ("users:read", "posts:read"))
    resp = await svc.client.get(spec.protected, headers={"Authorization": f"Bearer {token}"})
    assert_problem(resp, (401, 403))
