"""Verifying access tokens locally: the strict JWS parse, the claim checks, `TokenVerifier` and its cache."""

from __future__ import annotations

import base64
import binascii
import json
import re
import time
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import jwt
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

# Own section whether or not ruff is told quark_sdk is first-party:
# isort: split
from quark_sdk.auth.jwks import JWKSCache
from quark_sdk.auth.keys import ALLOWED_ALGORITHMS
from quark_sdk.auth.principal import DEFAULT_AUDIENCE, HUB_ISSUER, Principal
from quark_sdk.errors import Unauthenticated

if TYPE_CHECKING:
    from quark_sdk.revocation import RevokedSubjects

MAX_TOKEN_LENGTH = 16 * 1024
"""Refuse absurdly large tokens before parsing them (cheap DoS guard)."""

_REQUIRED_CLAIMS = ["exp", "iss", "sub", "aud"]

_B64URL = re.compile(r"[A-Za-z0-9_-]*")
"""Unpadded base64url, as RFC 7515 writes JWS segments; anything else is malformed."""


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
        """Verify with `cryptography` directly after a strict parse (see :func:`_decode_segments`).

        Why not ``jwt.decode``: PyJWT parsed the token three times per call and rebuilt its options,
        about a third of a verification's CPU beside the signature check itself (docs/performance.md).
        The checks are the same: pinned asymmetric algorithm matching the key's, kid, issuer-selected
        keys, signature, then exp/nbf/iat/aud/iss with the same leeway and the same 401 reasons.
        """
        header, claims, signing_input, signature = _decode_segments(token)
        # Checked before any key lookup: never let the token choose none/HS*.
        alg = header.get("alg")
        if alg not in ALLOWED_ALGORITHMS:
            raise Unauthenticated("token algorithm not allowed")
        if "crit" in header or "b64" in header:
            # RFC 7515 §4.1.11: extensions we do not implement must be refused, not ignored.
            raise Unauthenticated("token malformed")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise Unauthenticated("token has no key id")
        issuer = claims.get("iss")
        source = self.sources.get(issuer) if isinstance(issuer, str) else None
        if source is None or not isinstance(issuer, str):
            raise Unauthenticated("token issuer unknown")
        key = await source.get_key(kid)
        if alg != key.algorithm_name:
            raise Unauthenticated("token algorithm not allowed")
        if not _signature_valid(key, signing_input, signature):
            raise Unauthenticated("token signature invalid")
        _check_claims(claims, issuer=issuer, audience=self.audience, leeway=self.leeway)
        return _principal_from_claims(claims)


def _b64decode(segment: str) -> bytes:
    if not _B64URL.fullmatch(segment):
        raise Unauthenticated("token malformed")
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def _decode_segments(token: str) -> tuple[dict[str, Any], dict[str, Any], bytes, bytes]:
    """Header, claims, the signed bytes and the signature of a compact JWS; 401 if it is not one."""
    parts = token.split(".")
    if len(parts) != 3:
        raise Unauthenticated("token malformed")
    try:
        header = json.loads(_b64decode(parts[0]))
        claims = json.loads(_b64decode(parts[1]))
        signature = _b64decode(parts[2])
    except (ValueError, binascii.Error):
        raise Unauthenticated("token malformed") from None
    if not isinstance(header, dict) or not isinstance(claims, dict):
        raise Unauthenticated("token malformed")
    return header, claims, f"{parts[0]}.{parts[1]}".encode("ascii"), signature


def _signature_valid(key: jwt.PyJWK, signing_input: bytes, signature: bytes) -> bool:
    """The key object PyJWK loaded once per JWKS fetch verifies; nothing is re-parsed per call."""
    public = key.key
    try:
        if isinstance(public, Ed25519PublicKey):
            public.verify(signature, signing_input)
        elif isinstance(public, rsa.RSAPublicKey):
            public.verify(signature, signing_input, padding.PKCS1v15(), hashes.SHA256())
        else:  # _parse_jwks admits nothing else
            return False
    except InvalidSignature:
        return False
    return True


def _numeric_date(claims: Mapping[str, Any], name: str) -> int | None:
    """A NumericDate claim as an int (PyJWT's reading); 401 if present but not a number."""
    value = claims.get(name)
    if value is None:
        return None
    if isinstance(value, bool):
        value = None  # JSON true/false is not a date
    try:
        return int(value)  # type: ignore[arg-type]
    except (ValueError, TypeError, OverflowError):
        raise Unauthenticated("token issued-at invalid" if name == "iat" else "token malformed") from None


def _check_claims(claims: Mapping[str, Any], *, issuer: str, audience: str | list[str], leeway: float) -> None:
    """The registered-claim checks ``jwt.decode`` did, with the same reasons (tests pin them)."""
    for name in _REQUIRED_CLAIMS:
        if claims.get(name) is None:
            reason = "token audience invalid" if name == "aud" else f"token missing required claim '{name}'"
            raise Unauthenticated(reason)
    now = time.time()
    iat = _numeric_date(claims, "iat")
    nbf = _numeric_date(claims, "nbf")
    exp = _numeric_date(claims, "exp")
    if (iat is not None and iat > now + leeway) or (nbf is not None and nbf > now + leeway):
        raise Unauthenticated("token not yet valid")
    if exp is None or exp <= now - leeway:
        raise Unauthenticated("token expired")
    if claims.get("iss") != issuer:
        raise Unauthenticated("token issuer invalid")
    aud = claims["aud"]
    accepted = [audience] if isinstance(audience, str) else audience
    aud_list = [aud] if isinstance(aud, str) else aud
    if not isinstance(aud_list, list) or not aud_list or not all(isinstance(a, str) for a in aud_list):
        raise Unauthenticated("token audience invalid")
    if not any(a in accepted for a in aud_list):
        raise Unauthenticated("token audience invalid")
    if "jti" in claims and not isinstance(claims["jti"], str):
        raise Unauthenticated("token invalid")
