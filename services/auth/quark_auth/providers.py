"""Sign-in providers, the client side of OAuth2 / OpenID Connect: configuration and presets, discovery, the
authorization URL (Authorization Code + PKCE S256, `state`, `nonce`), the code exchange, and verifying
who the person is — the ID token against the provider's JWKS (OIDC), or the provider's user API (GitHub).

Built on Authlib (PKCE, URL building, ID-token claim rules: `iss`, `aud`, `exp`, `iat`, `nonce`, `azp`,
`at_hash`) and its JOSE library joserfc (signatures; asymmetric algorithms only). HTTP goes through httpx.
The provider's answers are untrusted input: every failure becomes one `ProviderError` (401, nothing
stored), whose message names the check that failed and never a token.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

import httpx
from authlib.common.security import generate_token
from authlib.common.urls import add_params_to_uri
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from authlib.oidc.core import CodeIDToken
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from quark_auth.runtime import AuthRuntime
from quark_auth.settings import ProviderSettings
from quark_sdk.errors import NotFound, QuarkError

ID_TOKEN_ALGORITHMS = ["RS256", "RS384", "RS512", "PS256", "ES256", "ES384", "EdDSA"]
DISCOVERY_TTL = 3600.0
JWKS_REFETCH_AFTER = 30.0  # an unknown `kid` refetches the JWKS, at most this often
CLOCK_LEEWAY = 60

PRESETS: dict[str, dict[str, Any]] = {
    "google": {"issuer": "https://accounts.google.com", "scopes": ["openid", "email", "profile"],
               "display_name": "Google"},
    "github": {"authorize_url": "https://github.com/login/oauth/authorize",
               "token_url": "https://github.com/login/oauth/access_token",
               "userinfo_url": "https://api.github.com/user", "emails_url": "https://api.github.com/user/emails",
               "scopes": ["read:user", "user:email"], "display_name": "GitHub",
               "claims": {"subject": "id", "username": "login", "name": "name", "email": "email"}},
    "oidc": {"scopes": ["openid", "email", "profile"]},
}
DEFAULT_CLAIMS = {"subject": "sub", "email": "email", "email_verified": "email_verified",
                  "username": "preferred_username", "name": "name"}


class ProviderError(QuarkError):
    """The provider did not confirm the sign-in (refused code, bad ID token, ...)."""

    status, code, title = 401, "provider-sign-in-failed", "Sign-in with the provider failed"


class ProviderUnavailable(QuarkError):
    status, code, title = 502, "provider-unavailable", "The sign-in provider cannot be reached"


@dataclass(frozen=True)
class Provider:
    """A configured provider with its preset applied."""

    name: str
    display_name: str
    oidc: bool
    client_id: str
    client_secret_path: str | None
    scopes: list[str]
    claims: dict[str, str]
    issuer: str | None
    discovery_url: str | None
    authorize_url: str | None
    token_url: str | None
    userinfo_url: str | None
    emails_url: str | None


@dataclass(frozen=True)
class ProviderIdentity:
    """Who the provider says signed in: found again by (provider, subject) only."""

    provider: str
    subject: str
    email: str | None
    email_verified: bool
    username: str | None
    name: str | None


def provider(rt: AuthRuntime, name: str) -> Provider:
    conf: ProviderSettings | None = rt.settings.oidc_providers.get(name)
    if conf is None:
        raise NotFound(f"no sign-in provider {name!r} on this station")
    preset = PRESETS[conf.preset]
    claims = {**DEFAULT_CLAIMS, **preset.get("claims", {}), **conf.claims}
    issuer = conf.issuer or preset.get("issuer")
    discovery = conf.discovery_url or (f"{issuer.rstrip('/')}/.well-known/openid-configuration" if issuer else None)
    return Provider(
        name=name, display_name=conf.display_name or preset.get("display_name") or name.capitalize(),
        oidc=conf.preset != "github", client_id=conf.client_id, client_secret_path=conf.client_secret_path,
        scopes=conf.scopes or preset["scopes"], claims=claims, issuer=issuer, discovery_url=discovery,
        authorize_url=conf.authorize_url or preset.get("authorize_url"),
        token_url=conf.token_url or preset.get("token_url"),
        userinfo_url=conf.userinfo_url or preset.get("userinfo_url"),
        emails_url=conf.emails_url or preset.get("emails_url"))


def all_providers(rt: AuthRuntime) -> list[Provider]:
    return [provider(rt, name) for name in sorted(rt.settings.oidc_providers)]


def _client(rt: AuthRuntime) -> httpx.AsyncClient:
    return httpx.AsyncClient(timeout=rt.settings.oidc_http_timeout, follow_redirects=False,
                             headers={"Accept": "application/json", "User-Agent": "quark-auth"})


async def _get_json(rt: AuthRuntime, url: str, *, token: str | None = None) -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        async with _client(rt) as client:
            resp = await client.get(url, headers=headers)
    except httpx.HTTPError as exc:
        raise ProviderUnavailable(f"cannot reach {httpx.URL(url).host}: {type(exc).__name__}") from None
    if resp.status_code >= 500:
        raise ProviderUnavailable(f"{httpx.URL(url).host} answered {resp.status_code}")
    if resp.status_code != 200:
        raise ProviderError(f"the provider answered {resp.status_code} at {httpx.URL(url).path}")
    try:
        return resp.json()
    except ValueError:
        raise ProviderError("the provider's answer is not JSON") from None


async def _cached(rt: AuthRuntime, url: str, *, max_age: float) -> dict[str, Any]:
    hit = rt.provider_cache.get(url)
    if hit is not None and time.monotonic() - hit[0] < max_age:
        return hit[1]
    doc = await _get_json(rt, url)
    if not isinstance(doc, dict):
        raise ProviderError("the provider's document is not a JSON object")
    rt.provider_cache[url] = (time.monotonic(), doc)
    return doc


async def metadata(rt: AuthRuntime, p: Provider) -> dict[str, Any]:
    """The endpoints: from the discovery document (OIDC; its `issuer` must be the configured one) or the
    preset/configuration (OAuth2)."""
    if not p.oidc:
        return {"authorization_endpoint": p.authorize_url, "token_endpoint": p.token_url}
    assert p.discovery_url is not None
    doc = await _cached(rt, p.discovery_url, max_age=DISCOVERY_TTL)
    if p.issuer is not None and doc.get("issuer") != p.issuer:
        raise ProviderError("the discovery document names another issuer")
    for name in ("issuer", "authorization_endpoint", "token_endpoint", "jwks_uri"):
        if not isinstance(doc.get(name), str):
            raise ProviderError(f"the discovery document has no {name}")
    return {**doc, **({"authorization_endpoint": p.authorize_url} if p.authorize_url else {}),
            **({"token_endpoint": p.token_url} if p.token_url else {})}


@dataclass(frozen=True)
class AuthorizationRequest:
    url: str
    state: str
    nonce: str | None
    code_verifier: str


async def authorization_request(rt: AuthRuntime, p: Provider, *, redirect_uri: str) -> AuthorizationRequest:
    meta = await metadata(rt, p)
    state, verifier = generate_token(43), generate_token(64)
    nonce = generate_token(32) if p.oidc else None
    params = [("response_type", "code"), ("client_id", p.client_id), ("redirect_uri", redirect_uri),
              ("scope", " ".join(p.scopes)), ("state", state),
              ("code_challenge", create_s256_code_challenge(verifier)), ("code_challenge_method", "S256")]
    if nonce is not None:
        params.append(("nonce", nonce))
    return AuthorizationRequest(url=add_params_to_uri(str(meta["authorization_endpoint"]), params), state=state,
                                nonce=nonce, code_verifier=verifier)


async def _client_secret(rt: AuthRuntime, p: Provider) -> str | None:
    if p.client_secret_path is None:
        return None
    values = await asyncio.to_thread(rt.settings.secret_store().get, p.client_secret_path)
    secret = (values or {}).get("client_secret")
    if not secret:
        raise ProviderUnavailable(f"the client secret of provider {p.name!r} is missing from the secret store")
    return secret


async def exchange_code(rt: AuthRuntime, p: Provider, *, code: str, redirect_uri: str,
                        code_verifier: str) -> dict[str, Any]:
    """The token endpoint: the code (single use at the provider) and the PKCE verifier for tokens."""
    meta = await metadata(rt, p)
    secret = await _client_secret(rt, p)
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri,
            "code_verifier": code_verifier, "client_id": p.client_id}
    auth = httpx.BasicAuth(p.client_id, secret) if secret is not None else None  # client_secret_basic
    try:
        async with _client(rt) as client:
            resp = await client.post(str(meta["token_endpoint"]), data=form,
                                     auth=auth if auth is not None else httpx.USE_CLIENT_DEFAULT)
    except httpx.HTTPError as exc:
        raise ProviderUnavailable(f"cannot reach the token endpoint: {type(exc).__name__}") from None
    if resp.status_code >= 500:
        raise ProviderUnavailable(f"the token endpoint answered {resp.status_code}")
    try:
        body = resp.json()
    except ValueError:
        body = {}
    if resp.status_code != 200 or not isinstance(body, dict) or "error" in body:
        error = body.get("error") if isinstance(body, dict) else None
        raise ProviderError(f"the provider refused the code ({str(error or resp.status_code)[:60]})")
    if not isinstance(body.get("access_token"), str):
        raise ProviderError("the provider's token answer has no access_token")
    return body


async def _jwks(rt: AuthRuntime, url: str, kid: str | None) -> KeySet:
    doc = await _cached(rt, url, max_age=DISCOVERY_TTL)
    known = {k.get("kid") for k in doc.get("keys", []) if isinstance(k, dict)}
    fetched = rt.provider_cache[url][0]
    if kid is not None and kid not in known and time.monotonic() - fetched > JWKS_REFETCH_AFTER:
        rt.provider_cache.pop(url, None)  # the provider may have rotated its keys
        doc = await _cached(rt, url, max_age=DISCOVERY_TTL)
    try:
        return KeySet.import_key_set(doc)  # type: ignore[arg-type]
    except (JoseError, ValueError, TypeError, KeyError):
        raise ProviderError("the provider's JWKS cannot be read") from None


def _header_kid(token: str) -> str | None:
    import base64
    import json

    try:
        head = token.split(".")[0]
        value = json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))
    except (ValueError, IndexError):
        raise ProviderError("the ID token is malformed") from None
    if not isinstance(value, dict) or value.get("alg") not in ID_TOKEN_ALGORITHMS:
        raise ProviderError("the ID token's algorithm is not allowed")
    kid = value.get("kid")
    return kid if isinstance(kid, str) else None


async def verify_id_token(rt: AuthRuntime, p: Provider, tokens: dict[str, Any], *, nonce: str) -> dict[str, Any]:
    """Signature against the provider's JWKS, then Authlib's ID-token rules: iss, aud (our client id), azp,
    exp, iat, nonce (this sign-in's), at_hash."""
    id_token = tokens.get("id_token")
    if not isinstance(id_token, str):
        raise ProviderError("the provider sent no ID token")
    meta = await metadata(rt, p)
    keys = await _jwks(rt, str(meta["jwks_uri"]), _header_kid(id_token))
    try:
        decoded = jwt.decode(id_token, keys, algorithms=ID_TOKEN_ALGORITHMS)
    except (JoseError, ValueError) as exc:
        raise ProviderError(f"the ID token's signature is not valid ({type(exc).__name__})") from None
    claims = CodeIDToken(decoded.claims, decoded.header,
                         options={"iss": {"essential": True, "value": meta["issuer"]},
                                  "aud": {"essential": True, "value": p.client_id}},
                         params={"nonce": nonce, "client_id": p.client_id,
                                 "access_token": tokens.get("access_token")})
    try:
        claims.validate(now=int(rt.clock()), leeway=CLOCK_LEEWAY)
    except Exception as exc:  # Authlib's claim errors (expired, invalid_claim ...) share no public base here
        raise ProviderError(f"the ID token was refused: {getattr(exc, 'description', None) or exc}"[:200]) \
            from None
    if decoded.claims.get("nonce") != nonce:  # Authlib checks it only when present: here it is required
        raise ProviderError("the ID token was refused: nonce does not match")
    return dict(decoded.claims)


def _claim(values: dict[str, Any], p: Provider, name: str) -> Any:
    return values.get(p.claims.get(name, name))


def _text(value: Any, limit: int) -> str | None:
    return str(value)[:limit] if isinstance(value, str | int) and not isinstance(value, bool) and str(value) else None


async def identify(rt: AuthRuntime, p: Provider, tokens: dict[str, Any], *, nonce: str | None) -> ProviderIdentity:
    """Who signed in. OIDC: the verified ID token (the userinfo endpoint is not needed for the subject).
    GitHub: its user API, and its emails API for a *verified* address."""
    if p.oidc:
        assert nonce is not None
        values = await verify_id_token(rt, p, tokens, nonce=nonce)
        verified_claim = _claim(values, p, "email_verified")
        email_verified = verified_claim is True or verified_claim == "true"
    else:
        access = str(tokens["access_token"])
        assert p.userinfo_url is not None
        values = await _get_json(rt, p.userinfo_url, token=access)
        if not isinstance(values, dict):
            raise ProviderError("the provider's user API did not answer an object")
        email_verified = False
        if p.emails_url:
            emails = await _get_json(rt, p.emails_url, token=access)
            chosen = next((e for e in emails if isinstance(e, dict) and e.get("primary") and e.get("verified")),
                          None) if isinstance(emails, list) else None
            if chosen is not None and isinstance(chosen.get("email"), str):
                values = {**values, p.claims.get("email", "email"): chosen["email"]}
                email_verified = True
    subject = _text(_claim(values, p, "subject"), 255)
    if subject is None:
        raise ProviderError("the provider did not say who signed in (no subject)")
    email = _text(_claim(values, p, "email"), 254)
    return ProviderIdentity(provider=p.name, subject=subject, email=email, email_verified=email_verified and
                            email is not None, username=_text(_claim(values, p, "username"), 64),
                            name=_text(_claim(values, p, "name"), 64))
