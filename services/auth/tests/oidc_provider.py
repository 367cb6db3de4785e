"""A local OpenID Connect provider for the tests: a small Starlette app served by uvicorn over real HTTP on
127.0.0.1, in its own thread (so a blocking Selenium driver cannot stall it). It is a test double that
speaks the real protocol — discovery, JWKS, the authorization endpoint (Authorization Code with PKCE S256)
and the token endpoint (client_secret_basic, single-use codes bound to the redirect URI and the PKCE
challenge), ID tokens signed RS256 with joserfc — so the auth module talks to it exactly as to Google.

The person who "signs in" is `provider.person`; `provider.tweaks` makes the next ID tokens wrong on purpose
(`other_key`, `expired`, `audience`, `nonce`, `issuer`) for the negative tests. The authorization page
approves at once (no consent screen), except with `provider.consent = True`, where it shows a form with a
"Continue" button (the browser test clicks it).
"""

from __future__ import annotations

import base64
import hashlib
import html
import secrets
import socket
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from joserfc import jwt
from joserfc.jwk import RSAKey
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from quark_sdk.testing import ThreadedServer

CLIENT_ID = "quark-test-client"
CLIENT_SECRET = "s3cret-of-the-test-client"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class _Grant:
    client_id: str
    redirect_uri: str
    challenge: str
    nonce: str | None
    person: dict[str, Any]
    used: bool = False


@dataclass
class LocalOidcProvider:
    port: int = field(default_factory=_free_port)
    person: dict[str, Any] = field(default_factory=lambda: {
        "sub": "248289761001", "email": "jane@example.org", "email_verified": True, "name": "Jane Doe",
        "preferred_username": "jane"})
    tweaks: set[str] = field(default_factory=set)
    consent: bool = False
    key: RSAKey = field(default_factory=lambda: RSAKey.generate_key(2048, parameters={"kid": "k1"}))
    other_key: RSAKey = field(default_factory=lambda: RSAKey.generate_key(2048, parameters={"kid": "k1"}))
    grants: dict[str, _Grant] = field(default_factory=dict)
    token_requests: int = 0
    access_tokens: dict[str, dict[str, Any]] = field(default_factory=dict)  # for the GitHub-style user API
    github_emails: list[dict[str, Any]] = field(default_factory=lambda: [
        {"email": "old@example.org", "primary": False, "verified": True},
        {"email": "octo@example.org", "primary": True, "verified": True}])

    @property
    def issuer(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def github_settings(self, name: str = "github") -> dict[str, Any]:
        """The `github` preset pointed at this server's GitHub-style endpoints (OAuth2 + user API)."""
        return {name: {"preset": "github", "client_id": CLIENT_ID, "client_secret_path": f"auth/oidc/{name}",
                       "authorize_url": f"{self.issuer}/authorize", "token_url": f"{self.issuer}/token",
                       "userinfo_url": f"{self.issuer}/user", "emails_url": f"{self.issuer}/user/emails"}}

    def settings(self, name: str = "local") -> dict[str, Any]:
        """`oidc_providers` entry of the auth settings for this provider (secret from the secret store)."""
        return {name: {"preset": "oidc", "issuer": self.issuer, "client_id": CLIENT_ID,
                       "client_secret_path": f"auth/oidc/{name}", "display_name": "Local ID"}}

    # -- endpoints --------------------------------------------------------------------------------------

    async def discovery(self, request: Request) -> Response:
        return JSONResponse({
            "issuer": self.issuer, "authorization_endpoint": f"{self.issuer}/authorize",
            "token_endpoint": f"{self.issuer}/token", "jwks_uri": f"{self.issuer}/jwks",
            "response_types_supported": ["code"], "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"], "code_challenge_methods_supported": ["S256"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic"]})

    async def jwks(self, request: Request) -> Response:
        return JSONResponse({"keys": [self.key.as_dict(private=False)]})

    async def authorize(self, request: Request) -> Response:
        q = request.query_params
        if q.get("client_id") != CLIENT_ID or q.get("response_type") != "code":
            return JSONResponse({"error": "unauthorized_client"}, status_code=400)
        if q.get("code_challenge_method") != "S256" or not q.get("code_challenge"):
            return JSONResponse({"error": "invalid_request", "error_description": "PKCE S256 required"}, 400)
        redirect_uri, state = q.get("redirect_uri", ""), q.get("state", "")
        if request.method == "GET" and self.consent:
            fields = "".join(f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">'
                             for k, v in q.items())
            return HTMLResponse(f'<!doctype html><html lang="en"><head><title>Local ID</title></head><body><main>'
                                f'<h1>Local ID</h1><form method="post" action="/authorize?{html.escape(str(q))}">'
                                f'{fields}<p>Sign in to Quark as {html.escape(str(self.person.get("name")))}</p>'
                                f'<button type="submit" id="approve">Continue</button></form></main></body></html>')
        code = secrets.token_urlsafe(24)
        self.grants[code] = _Grant(client_id=CLIENT_ID, redirect_uri=redirect_uri, challenge=q["code_challenge"],
                                   nonce=q.get("nonce"), person=dict(self.person))
        sep = "&" if "?" in redirect_uri else "?"
        return RedirectResponse(f"{redirect_uri}{sep}{urlencode({'code': code, 'state': state})}", status_code=302)

    async def token(self, request: Request) -> Response:
        self.token_requests += 1
        form = await request.form()
        auth = request.headers.get("authorization", "")
        expected = base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
        if auth != f"Basic {expected}":
            return JSONResponse({"error": "invalid_client"}, status_code=401)
        grant = self.grants.get(str(form.get("code", "")))
        if form.get("grant_type") != "authorization_code" or grant is None or grant.used:
            return JSONResponse({"error": "invalid_grant"}, status_code=400)
        grant.used = True  # single use: a replayed code is refused
        if form.get("redirect_uri") != grant.redirect_uri:
            return JSONResponse({"error": "invalid_grant", "error_description": "redirect_uri"}, status_code=400)
        verifier = str(form.get("code_verifier", ""))
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
        if challenge != grant.challenge:
            return JSONResponse({"error": "invalid_grant", "error_description": "PKCE"}, status_code=400)
        now = int(time.time())
        claims = {**grant.person, "iss": self.issuer, "aud": CLIENT_ID, "iat": now, "exp": now + 300}
        if grant.nonce is not None:
            claims["nonce"] = grant.nonce
        if "expired" in self.tweaks:
            claims["iat"], claims["exp"] = now - 3600, now - 1800
        if "audience" in self.tweaks:
            claims["aud"] = "someone-else"
        if "nonce" in self.tweaks:
            claims["nonce"] = "not-the-nonce-of-this-sign-in"
        if "issuer" in self.tweaks:
            claims["iss"] = "https://evil.example"
        key = self.other_key if "other_key" in self.tweaks else self.key
        id_token = jwt.encode({"alg": "RS256", "kid": "k1"}, claims, key)
        access = secrets.token_urlsafe(24)
        self.access_tokens[access] = grant.person
        return JSONResponse({"access_token": access, "token_type": "Bearer", "expires_in": 300,
                             "id_token": id_token}, headers={"Cache-Control": "no-store"})

    def _bearer(self, request: Request) -> dict[str, Any] | None:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        return self.access_tokens.get(token) if scheme.lower() == "bearer" else None

    async def github_user(self, request: Request) -> Response:
        """GitHub's `GET /user`: a numeric id, the login; `email` only when public (here: none)."""
        person = self._bearer(request)
        if person is None:
            return JSONResponse({"message": "Bad credentials"}, status_code=401)
        return JSONResponse({"id": 583231, "login": "octocat", "name": person.get("name"), "email": None})

    async def github_user_emails(self, request: Request) -> Response:
        if self._bearer(request) is None:
            return JSONResponse({"message": "Bad credentials"}, status_code=401)
        return JSONResponse(self.github_emails)

    # -- running ----------------------------------------------------------------------------------------

    def app(self) -> Starlette:
        return Starlette(routes=[
            Route("/.well-known/openid-configuration", self.discovery),
            Route("/jwks", self.jwks),
            Route("/authorize", self.authorize, methods=["GET", "POST"]),
            Route("/token", self.token, methods=["POST"]),
            Route("/user", self.github_user),
            Route("/user/emails", self.github_user_emails),
        ])

    def start(self) -> LocalOidcProvider:
        self._server = ThreadedServer(self.app(), self.port, what="the local OIDC provider")
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop()
