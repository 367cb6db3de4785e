"""Token signing and verification shared by every Quark service.

Two issuers sign JWTs with the code below: the auth service (user access tokens,
``iss="quark-auth"``) and the Plugin Hub (client-credentials service tokens,
``iss="quark-hub"``, ``token_use="service"``). Both publish their public keys as a
JWKS; every other service verifies tokens locally against a cached copy, so a request
never costs a call to the issuer.

Keys rotate with overlap: :meth:`SigningKeySet.rotate` makes a new active key and keeps
the old one published (but never signing) for ``overlap`` seconds, i.e. until the last
token it signed has expired. A verifier that meets an unknown ``kid`` refreshes its
JWKS once (rate limited), which is how it learns about a rotation.

Only asymmetric algorithms are accepted (EdDSA/Ed25519 preferred, RS256 for
compatibility); ``none`` and HS* are rejected before any key lookup, so a public key
can never be abused as an HMAC secret. Tokens are never logged or echoed in errors.
"""

from __future__ import annotations

import asyncio
import logging
import math
import secrets
import time
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import TYPE_CHECKING, Annotated, Any, Literal, cast

import httpx
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi import Depends
from jwt.algorithms import OKPAlgorithm, RSAAlgorithm
from starlette.applications import Starlette
from starlette.datastructures import State
from starlette.requests import HTTPConnection

# Own section whether or not ruff is told quark_sdk is first-party:
# isort: split
from quark_sdk.errors import PermissionDenied, Unauthenticated

if TYPE_CHECKING:
    from quark_sdk.revocation import RevokedSubjects

log = logging.getLogger("quark.auth")

__all__ = [
    "ALLOWED_ALGORITHMS",
    "AUTH_ISSUER",
    "DEFAULT_AUDIENCE",
    "HUB_ISSUER",
    "USER_TOKEN_REQUIRED",
    "AnyPrincipal",
    "CurrentUser",
    "JWKSCache",
    "OptionalUser",
    "Principal",
    "SigningKey",
    "SigningKeySet",
    "TokenVerifier",
    "UserId",
    "UserPrincipal",
    "WritingUser",
    "authenticate_token",
    "current_user",
    "install_token_verifier",
    "optional_user",
    "require_role",
    "require_scope",
]

AUTH_ISSUER = "quark-auth"
HUB_ISSUER = "quark-hub"
DEFAULT_AUDIENCE = "quark"
USER_TOKEN_REQUIRED = "a user token is required"  # noqa: S105 - an error text
UNVERIFIED_WRITER = "verify your email address or phone number before writing"

Algorithm = Literal["EdDSA", "RS256"]
PrincipalKind = Literal["user", "service"]
PrivateKey = Ed25519PrivateKey | rsa.RSAPrivateKey

ALLOWED_ALGORITHMS: tuple[str, ...] = ("EdDSA", "RS256")
"""Asymmetric only: a verifier must never treat a published key as an HMAC secret."""

DEFAULT_OVERLAP = 3600.0
"""Seconds a retired key keeps verifying; must exceed the longest token lifetime."""

MAX_TOKEN_LENGTH = 16 * 1024
"""Refuse absurdly large tokens before parsing them (cheap DoS guard)."""

_RSA_BITS = 3072
_MIN_RSA_BITS = 2048
_REQUIRED_CLAIMS = ["exp", "iss", "sub", "aud"]

# admin ⊇ moderator ⊇ user: a higher rank satisfies every lower one.
_ROLE_RANK: dict[str, int] = {"user": 0, "moderator": 1, "admin": 2}


# -- principal ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Principal:
    """Who is calling: a user (auth-service token) or a module (hub service token).

    Built only from a verified token, so handlers can trust every field.
    """

    subject: str
    kind: PrincipalKind
    username: str | None = None
    roles: frozenset[str] = frozenset()
    permissions: frozenset[str] = frozenset()
    scopes: frozenset[str] = frozenset()
    token_id: str | None = None
    claims: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False, repr=False)

    @property
    def is_user(self) -> bool:
        return self.kind == "user"

    @property
    def is_service(self) -> bool:
        return self.kind == "service"

    def has_role(self, role: str) -> bool:
        """True if the principal holds ``role`` or a role above it (admin ⊇ moderator ⊇ user)."""
        if role in self.roles:
            return True
        wanted = _ROLE_RANK.get(role)
        if wanted is None:
            return False
        return any(_ROLE_RANK.get(held, -1) >= wanted for held in self.roles)

    def has_scope(self, scope: str) -> bool:
        """Exact match: scopes are capabilities granted by the hub, with no implied hierarchy."""
        return scope in self.scopes

    @property
    def issued_at(self) -> Any:
        return self.claims.get("iat")

    @property
    def verified(self) -> bool:
        """The account proved an address (email) or a number (phone), as the auth module signs it."""
        return self.claims.get("email_verified") is True or self.claims.get("phone_number_verified") is True


# -- signing --------------------------------------------------------------------------------


def _new_kid() -> str:
    # Opaque and unguessable; the time prefix only makes kids sortable when reading logs.
    return f"{int(time.time()):x}-{secrets.token_urlsafe(9)}"


@dataclass(frozen=True)
class SigningKey:
    """One private signing key with its ``kid`` and lifecycle timestamps (epoch seconds)."""

    kid: str
    algorithm: Algorithm
    private_key: PrivateKey = field(repr=False, compare=False)
    created_at: float
    retired_at: float | None = None

    def __post_init__(self) -> None:
        if self.algorithm == "EdDSA" and not isinstance(self.private_key, Ed25519PrivateKey):
            raise ValueError("EdDSA signing keys must be Ed25519")
        if self.algorithm == "RS256":
            if not isinstance(self.private_key, rsa.RSAPrivateKey):
                raise ValueError("RS256 signing keys must be RSA")
            if self.private_key.key_size < _MIN_RSA_BITS:
                raise ValueError(f"RSA signing keys must have at least {_MIN_RSA_BITS} bits")
        if self.algorithm not in ALLOWED_ALGORITHMS:
            raise ValueError(f"unsupported signing algorithm {self.algorithm!r}")

    @classmethod
    def generate(cls, alg: Algorithm = "EdDSA", *, kid: str | None = None, now: float | None = None) -> SigningKey:
        """A fresh key; Ed25519 by default (small, fast, no parameter choices to get wrong)."""
        private_key: PrivateKey
        if alg == "EdDSA":
            private_key = Ed25519PrivateKey.generate()
        elif alg == "RS256":
            private_key = rsa.generate_private_key(public_exponent=65537, key_size=_RSA_BITS)
        else:
            raise ValueError(f"unsupported signing algorithm {alg!r}")
        created = time.time() if now is None else now
        return cls(kid=kid or _new_kid(), algorithm=alg, private_key=private_key, created_at=created)

    def sign(self, claims: Mapping[str, Any]) -> str:
        """Sign ``claims`` as a compact JWT with this key's ``kid`` in the header.

        ``exp`` is mandatory: rotation overlap relies on every token expiring.
        """
        if "exp" not in claims:
            raise ValueError("refusing to sign a token without 'exp'")
        return jwt.encode(dict(claims), self.private_key, algorithm=self.algorithm, headers={"kid": self.kid})

    def to_public_jwk(self) -> dict[str, Any]:
        """The RFC 7517 public JWK a verifier needs (no private material)."""
        public = self.private_key.public_key()
        jwk: dict[str, Any]
        if isinstance(public, rsa.RSAPublicKey):
            jwk = dict(RSAAlgorithm.to_jwk(public, as_dict=True))
        else:
            jwk = dict(OKPAlgorithm.to_jwk(public, as_dict=True))
        jwk.update({"kid": self.kid, "use": "sig", "alg": self.algorithm})
        return jwk

    def to_dict(self) -> dict[str, Any]:
        """Serializable form *including the private key* (PKCS#8 PEM): for the secret store only."""
        pem = self.private_key.private_bytes(
            encoding=serialization.Encoding.PEM,
            format=serialization.PrivateFormat.PKCS8,
            encryption_algorithm=serialization.NoEncryption(),
        ).decode("ascii")
        return {
            "kid": self.kid,
            "alg": self.algorithm,
            "private_key_pem": pem,
            "created_at": self.created_at,
            "retired_at": self.retired_at,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SigningKey:
        alg = data["alg"]
        if alg not in ALLOWED_ALGORITHMS:
            raise ValueError(f"unsupported signing algorithm {alg!r}")
        loaded = serialization.load_pem_private_key(str(data["private_key_pem"]).encode("ascii"), password=None)
        if not isinstance(loaded, Ed25519PrivateKey | rsa.RSAPrivateKey):
            raise ValueError("stored signing key is neither Ed25519 nor RSA")
        retired = data.get("retired_at")
        return cls(
            kid=str(data["kid"]),
            algorithm=cast(Algorithm, alg),
            private_key=loaded,
            created_at=float(data["created_at"]),
            retired_at=None if retired is None else float(retired),
        )


class SigningKeySet:
    """An issuer's keys: one active (signs) plus retired ones still published for verification.

    The auth service and the hub each persist one of these in their secret store
    (:meth:`to_dict` / :meth:`from_dict`) and serve :meth:`jwks` publicly.
    """

    def __init__(
        self, active: SigningKey, retired: Iterable[SigningKey] = (), *, overlap: float = DEFAULT_OVERLAP
    ) -> None:
        if overlap < 0:
            raise ValueError("overlap must be >= 0")
        self._active = active
        self._retired: list[SigningKey] = list(retired)
        self.overlap = float(overlap)

    @classmethod
    def generate(
        cls, alg: Algorithm = "EdDSA", *, overlap: float = DEFAULT_OVERLAP, now: float | None = None
    ) -> SigningKeySet:
        return cls(SigningKey.generate(alg, now=now), overlap=overlap)

    @property
    def active(self) -> SigningKey:
        return self._active

    @property
    def retired(self) -> tuple[SigningKey, ...]:
        return tuple(self._retired)

    def sign(self, claims: Mapping[str, Any]) -> str:
        """Sign with the active key; retired keys never sign."""
        return self._active.sign(claims)

    def rotate(self, *, now: float | None = None, alg: Algorithm | None = None) -> SigningKey:
        """Make a new active key; the old one is retired but stays in the JWKS for ``overlap``."""
        ts = time.time() if now is None else now
        new = SigningKey.generate(alg or self._active.algorithm, now=ts)
        self._retired.insert(0, replace(self._active, retired_at=ts))
        self._active = new
        self.prune(now=ts)
        return new

    def _in_overlap(self, key: SigningKey, now: float) -> bool:
        return key.retired_at is None or key.retired_at + self.overlap > now

    def prune(self, *, now: float | None = None) -> None:
        """Forget retired keys whose overlap has passed (their tokens have all expired)."""
        ts = time.time() if now is None else now
        self._retired = [k for k in self._retired if self._in_overlap(k, ts)]

    def jwks(self, *, now: float | None = None) -> dict[str, Any]:
        """Public JWKS: the active key plus retired keys still within their overlap."""
        ts = time.time() if now is None else now
        keys = [self._active, *(k for k in self._retired if self._in_overlap(k, ts))]
        return {"keys": [k.to_public_jwk() for k in keys]}

    def to_dict(self) -> dict[str, Any]:
        """Serializable form including private keys: store it in the secret store only."""
        return {
            "version": 1,
            "overlap": self.overlap,
            "active": self._active.to_dict(),
            "retired": [k.to_dict() for k in self._retired],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SigningKeySet:
        return cls(
            SigningKey.from_dict(data["active"]),
            [SigningKey.from_dict(k) for k in data.get("retired", [])],
            overlap=float(data.get("overlap", DEFAULT_OVERLAP)),
        )


# -- verification ---------------------------------------------------------------------------


def _parse_jwks(data: Any) -> dict[str, jwt.PyJWK]:
    """Usable verification keys by kid; unusable entries are skipped, not fatal.

    Keys whose algorithm is not asymmetric-allowed (e.g. ``oct``/HS256) are dropped here,
    so they can never be selected for verification.
    """
    if not isinstance(data, dict) or not isinstance(data.get("keys"), list):
        raise ValueError("response is not a JWK set")
    keys: dict[str, jwt.PyJWK] = {}
    for raw in data["keys"]:
        if not isinstance(raw, dict):
            continue
        kid = raw.get("kid")
        if not isinstance(kid, str) or not kid or raw.get("use", "sig") != "sig":
            continue
        try:
            jwk = jwt.PyJWK(raw)
        except jwt.PyJWTError as exc:
            log.warning("skipping unusable JWK %r: %s", kid, exc)
            continue
        if jwk.algorithm_name not in ALLOWED_ALGORITHMS:
            log.warning("skipping JWK %r with disallowed algorithm %r", kid, jwk.algorithm_name)
            continue
        if isinstance(jwk.key, rsa.RSAPublicKey) and jwk.key.key_size < _MIN_RSA_BITS:
            log.warning("skipping JWK %r: RSA key too small", kid)
            continue
        keys[kid] = jwk
    return keys


class JWKSCache:
    """An issuer's public keys, fetched over HTTP and cached.

    Why: verification must not call the issuer per request, yet must notice rotations.
    Keys are refreshed after ``ttl`` seconds or when an unknown ``kid`` shows up; refreshes
    are rate limited by ``min_refresh_interval`` (so forged kids cannot hammer the issuer)
    and concurrent callers share one fetch. When a fetch fails the last good key set keeps
    being served.
    """

    def __init__(
        self,
        url: str,
        *,
        client: httpx.AsyncClient | None = None,
        ttl: float = 300,
        min_refresh_interval: float = 5,
        timeout: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.url = url
        self.ttl = ttl
        self.min_refresh_interval = min_refresh_interval
        self.timeout = timeout
        self.fetch_count = 0
        """Fetch attempts so far (successful or not); useful for metrics and tests."""
        self._client = client
        self._clock = clock
        self._keys: dict[str, jwt.PyJWK] | None = None
        self._fetched_at = -math.inf
        self._last_attempt = -math.inf
        self._generation = 0
        self._lock = asyncio.Lock()

    @property
    def kids(self) -> frozenset[str]:
        """The kids currently cached (empty before the first successful fetch)."""
        return frozenset(self._keys or ())

    async def get_key(self, kid: str) -> jwt.PyJWK:
        keys = self._keys
        if keys is not None and kid in keys and self._clock() - self._fetched_at < self.ttl:
            return keys[kid]
        seen = self._generation
        async with self._lock:
            # Whoever held the lock before us may already have refreshed: share its result.
            if self._generation == seen and self._clock() - self._last_attempt >= self.min_refresh_interval:
                await self._refresh()
        if self._keys is None:
            raise Unauthenticated("cannot verify token: key set unavailable")
        key = self._keys.get(kid)
        if key is None:
            raise Unauthenticated("unknown signing key")
        return key

    async def refresh(self) -> None:
        """Fetch now (e.g. at startup to warm the cache); failures keep the old keys."""
        async with self._lock:
            await self._refresh()

    async def _refresh(self) -> None:
        self._last_attempt = self._clock()
        self.fetch_count += 1
        try:
            keys = _parse_jwks(await self._fetch())
        except (httpx.HTTPError, ValueError) as exc:
            state = "serving cached keys" if self._keys is not None else "no cached keys"
            log.warning("JWKS fetch from %s failed (%s): %s", self.url, state, exc)
            return
        else:
            self._keys = keys
            self._fetched_at = self._clock()
        finally:
            # Bumped only once the attempt is over, so callers queued behind it reuse its outcome.
            self._generation += 1

    async def _fetch(self) -> Any:
        if self._client is not None:
            response = await self._client.get(self.url, timeout=self.timeout)
        else:
            # Fetches are rare (every ttl at most), so a short-lived client avoids lifecycle plumbing.
            async with httpx.AsyncClient(timeout=self.timeout) as client:
                response = await client.get(self.url)
        response.raise_for_status()
        return response.json()


def _string_set(value: Any, claim: str) -> frozenset[str]:
    if value is None:
        return frozenset()
    if isinstance(value, str):
        return frozenset(value.split())
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return frozenset(value)
    raise Unauthenticated(f"token claim '{claim}' invalid")


def _principal_from_claims(claims: Mapping[str, Any]) -> Principal:
    subject = claims.get("sub")
    if not isinstance(subject, str) or not subject:
        raise Unauthenticated("token claim 'sub' invalid")
    jti = claims.get("jti")
    token_id = jti if isinstance(jti, str) else None
    frozen_claims = MappingProxyType(dict(claims))
    token_use = claims.get("token_use")
    # Only the hub issues service tokens and only the auth service issues user tokens.
    if (token_use == "service") != (claims.get("iss") == HUB_ISSUER):  # noqa: S105 - a claim value
        raise Unauthenticated("token type not accepted from this issuer")
    if token_use == "service":  # noqa: S105 - a claim value, not a password
        return Principal(
            subject=subject,
            kind="service",
            scopes=_string_set(claims.get("scope"), "scope"),
            token_id=token_id,
            claims=frozen_claims,
        )
    if token_use not in (None, "access"):
        # e.g. a refresh or one-off token must never pass as an access token.
        raise Unauthenticated("token type not accepted")
    username = claims.get("username")
    return Principal(
        subject=subject,
        kind="user",
        username=username if isinstance(username, str) else None,
        roles=_string_set(claims.get("roles"), "roles"),
        permissions=_string_set(claims.get("permissions"), "permissions"),
        scopes=_string_set(claims.get("scope"), "scope"),
        token_id=token_id,
        claims=frozen_claims,
    )


class VerifiedTokenCache:
    """Verified bearer tokens → principal, for a short while (bounded LRU).

    Verifying a token (JWT decodes and an Ed25519 check) is the largest per-request cost of a hot read
    after the database. A token is immutable, so a success can be reused until `min(exp, now + ttl)`;
    failures are never cached, and a tampered token is a different string.
    """

    def __init__(self, size: int = 10_000, ttl: float = 60.0) -> None:
        self.size, self.ttl = size, ttl
        self._items: OrderedDict[str, tuple[float, Principal]] = OrderedDict()

    def get(self, token: str) -> Principal | None:
        hit = self._items.get(token)
        if hit is None:
            return None
        if hit[0] <= time.time():
            del self._items[token]
            return None
        self._items.move_to_end(token)
        return hit[1]

    def put(self, token: str, principal: Principal) -> None:
        if self.ttl <= 0:
            return
        until = time.time() + self.ttl
        exp = principal.claims.get("exp")
        if isinstance(exp, int | float):
            until = min(until, float(exp))
        self._items[token] = (until, principal)
        self._items.move_to_end(token)
        while len(self._items) > self.size:
            self._items.popitem(last=False)


class TokenVerifier:
    """Verifies access tokens from the trusted issuers, locally, against their cached JWKS.

    ``sources`` maps each trusted ``iss`` to its key cache; a token's issuer selects the
    keys, so one issuer can never vouch for another's tokens.
    """

    def __init__(
        self,
        sources: Mapping[str, JWKSCache],
        *,
        audience: str | Sequence[str] = DEFAULT_AUDIENCE,
        leeway: float = 10,
        cache_ttl: float = 0.0,
        require_verified_to_write: bool = False,
    ) -> None:
        if not sources:
            raise ValueError("a TokenVerifier needs at least one trusted issuer")
        self.sources: dict[str, JWKSCache] = dict(sources)
        self.audience: str | list[str] = audience if isinstance(audience, str) else list(audience)
        self.leeway = leeway
        # Off by default; modules get `token_cache_ttl` (60 s) from their settings through the app factory.
        self.cache = VerifiedTokenCache(ttl=cache_ttl)
        # Deleted and suspended accounts (quark_sdk.revocation); set by the app factory when Valkey is there.
        self.revocations: RevokedSubjects | None = None
        # The station's policy: unverified accounts may read but not write (publish, comment, message, upload).
        self.require_verified_to_write = require_verified_to_write

    async def verify(self, token: str) -> Principal:
        """The principal a valid token stands for; otherwise :class:`Unauthenticated`."""
        if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_LENGTH:
            raise Unauthenticated("token malformed")
        principal = self.cache.get(token)
        if principal is None:
            principal = await self._verify(token)
            self.cache.put(token, principal)
        if (principal.kind == "user" and self.revocations is not None
                and self.revocations.is_revoked(principal.subject, principal.issued_at)):
            raise Unauthenticated("token revoked")
        return principal

    async def _verify(self, token: str) -> Principal:
        try:
            header = jwt.get_unverified_header(token)
            unverified = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError:
            raise Unauthenticated("token malformed") from None
        # Checked before any key lookup: never let the token choose none/HS*.
        if header.get("alg") not in ALLOWED_ALGORITHMS:
            raise Unauthenticated("token algorithm not allowed")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise Unauthenticated("token has no key id")
        issuer = unverified.get("iss")
        source = self.sources.get(issuer) if isinstance(issuer, str) else None
        if source is None:
            raise Unauthenticated("token issuer unknown")
        key = await source.get_key(kid)
        try:
            claims = jwt.decode(
                token,
                key=key,
                algorithms=[key.algorithm_name],
                audience=self.audience,
                issuer=issuer,
                leeway=self.leeway,
                options={"require": list(_REQUIRED_CLAIMS), "enforce_minimum_key_length": True},
            )
        except jwt.PyJWTError as exc:
            raise Unauthenticated(_reason(exc)) from None
        return _principal_from_claims(claims)


def _reason(exc: jwt.PyJWTError) -> str:
    """A short, token-free reason for the 401 detail."""
    if isinstance(exc, jwt.ExpiredSignatureError):
        return "token expired"
    if isinstance(exc, jwt.ImmatureSignatureError):
        return "token not yet valid"
    if isinstance(exc, jwt.InvalidAudienceError):
        return "token audience invalid"
    if isinstance(exc, jwt.MissingRequiredClaimError):
        return "token audience invalid" if exc.claim == "aud" else f"token missing required claim '{exc.claim}'"
    if isinstance(exc, jwt.InvalidSignatureError):
        return "token signature invalid"
    if isinstance(exc, jwt.InvalidAlgorithmError):
        return "token algorithm not allowed"
    if isinstance(exc, jwt.InvalidIssuerError):
        return "token issuer invalid"
    if isinstance(exc, jwt.InvalidIssuedAtError):
        return "token issued-at invalid"
    if isinstance(exc, jwt.DecodeError):
        return "token malformed"
    return "token invalid"


# -- FastAPI integration --------------------------------------------------------------------


def install_token_verifier(app: Starlette, verifier: TokenVerifier) -> None:
    """Make ``verifier`` the one the auth dependencies use for this app."""
    app.state.token_verifier = verifier


def _verifier(app_or_state: Starlette | State | HTTPConnection) -> TokenVerifier:
    if isinstance(app_or_state, HTTPConnection):
        # Not conn.state: that is per-request state, the verifier lives on the app.
        app_or_state = cast(Starlette, app_or_state.app)
    state = app_or_state.state if isinstance(app_or_state, Starlette) else app_or_state
    verifier = getattr(state, "token_verifier", None)
    if verifier is None:
        raise RuntimeError("no token verifier installed; call install_token_verifier(app, verifier)")
    return cast(TokenVerifier, verifier)


async def authenticate_token(app_or_state: Starlette | State | HTTPConnection, token: str) -> Principal:
    """Verify a token obtained some other way than the Authorization header.

    Why: browsers cannot set headers on WebSocket upgrades, so a WebSocket handler
    receives the token in its first message (or a subprotocol) and calls this.
    """
    token = (token or "").strip()
    if token[:7].lower() == "bearer ":
        token = token[7:].strip()
    if not token:
        raise Unauthenticated("bearer token required")
    return await _verifier(app_or_state).verify(token)


def _bearer(conn: HTTPConnection) -> str | None:
    header = conn.headers.get("authorization")
    if header is None:
        return None
    scheme, _, token = header.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise Unauthenticated("authorization header must be 'Bearer <token>'")
    return token


async def current_user(request: HTTPConnection) -> Principal:
    """Dependency: the verified caller (user or service); 401 without a valid Bearer token.

    Typed on HTTPConnection so it also works on WebSocket routes that send the header.
    """
    token = _bearer(request)
    if token is None:
        raise Unauthenticated("bearer token required")
    principal = await _verifier(request).verify(token)
    request.state.principal = principal  # for access logs and rate limiting
    return principal


async def optional_user(request: HTTPConnection) -> Principal | None:
    """Dependency: None when anonymous, but a present-and-bad token is still a 401."""
    token = _bearer(request)
    if token is None:
        return None
    principal = await _verifier(request).verify(token)
    request.state.principal = principal
    return principal


CurrentUser = Annotated[Principal, Depends(current_user)]
OptionalUser = Annotated[Principal | None, Depends(optional_user)]
AnyPrincipal = CurrentUser  # a user or a module: for routes both may call


async def user_principal(principal: CurrentUser) -> Principal:
    """Dependency: a user's verified token; a service token gets 403."""
    if principal.kind != "user":
        raise PermissionDenied(USER_TOKEN_REQUIRED)
    return principal


UserPrincipal = Annotated[Principal, Depends(user_principal)]


async def user_id(principal: UserPrincipal) -> uuid.UUID:
    """Dependency: the calling user's id — the one place a principal becomes an id.

    Routes pass ids (and, where rules depend on roles, the principal) to service functions;
    service functions never see tokens."""
    try:
        return uuid.UUID(principal.subject)
    except ValueError:
        raise Unauthenticated("token claim 'sub' invalid") from None


UserId = Annotated[uuid.UUID, Depends(user_id)]


async def writing_user(request: HTTPConnection, principal: UserPrincipal) -> Principal:
    """Dependency for every write: a user whose account still stands (not deleted or suspended, checked
    against Valkey, not only the in-memory list) and, under the station's policy, is verified."""
    verifier = _verifier(request)
    if verifier.revocations is not None and await verifier.revocations.is_revoked_now(
            principal.subject, principal.issued_at):
        raise Unauthenticated("token revoked")
    if verifier.require_verified_to_write and not principal.verified:
        raise PermissionDenied(UNVERIFIED_WRITER)
    return principal


WritingUser = Annotated[Principal, Depends(writing_user)]


def require_role(*roles: str) -> Callable[..., Awaitable[Principal]]:
    """Dependency factory: a user holding any of ``roles`` (hierarchy applies), else 403."""
    if not roles:
        raise ValueError("require_role needs at least one role")

    async def dependency(principal: CurrentUser) -> Principal:
        if principal.kind != "user":
            raise PermissionDenied(USER_TOKEN_REQUIRED)
        if not any(principal.has_role(role) for role in roles):
            raise PermissionDenied(f"requires role {' or '.join(roles)}")
        return principal

    dependency.__name__ = f"require_role_{'_'.join(roles)}"
    return dependency


def require_scope(*scopes: str) -> Callable[..., Awaitable[Principal]]:
    """Dependency factory: a service token granted *all* of ``scopes``, else 403."""
    if not scopes:
        raise ValueError("require_scope needs at least one scope")

    async def dependency(principal: CurrentUser) -> Principal:
        if principal.kind != "service":
            raise PermissionDenied("a service token is required")
        missing = [s for s in scopes if not principal.has_scope(s)]
        if missing:
            raise PermissionDenied(f"missing scope {' '.join(missing)}")
        return principal

    dependency.__name__ = f"require_scope_{'_'.join(scopes)}"
    return dependency
