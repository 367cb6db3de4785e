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

The package: ``principal`` (issuers, `Principal`), ``keys`` (signing keys and their rotation), ``jwks``
(the cached public keys of an issuer), ``tokens`` (verification), ``dependencies`` (FastAPI). Import from
``quark_sdk.auth``.
"""

from __future__ import annotations

from quark_sdk.auth.dependencies import (
    UNVERIFIED_WRITER,
    USER_TOKEN_REQUIRED,
    AnyPrincipal,
    CurrentUser,
    OptionalUser,
    UserId,
    UserPrincipal,
    WritingUser,
    authenticate_token,
    current_user,
    install_token_verifier,
    optional_user,
    require_role,
    require_scope,
    user_id,
    user_principal,
    writing_user,
)
from quark_sdk.auth.jwks import JWKSCache
from quark_sdk.auth.keys import ALLOWED_ALGORITHMS, DEFAULT_OVERLAP, Algorithm, PrivateKey, SigningKey, SigningKeySet
from quark_sdk.auth.principal import AUTH_ISSUER, DEFAULT_AUDIENCE, HUB_ISSUER, Principal, PrincipalKind
from quark_sdk.auth.tokens import MAX_TOKEN_LENGTH, TokenVerifier, VerifiedTokenCache

__all__ = [
    "ALLOWED_ALGORITHMS",
    "AUTH_ISSUER",
    "DEFAULT_AUDIENCE",
    "DEFAULT_OVERLAP",
    "HUB_ISSUER",
    "MAX_TOKEN_LENGTH",
    "UNVERIFIED_WRITER",
    "USER_TOKEN_REQUIRED",
    "Algorithm",
    "AnyPrincipal",
    "CurrentUser",
    "JWKSCache",
    "OptionalUser",
    "Principal",
    "PrincipalKind",
    "PrivateKey",
    "SigningKey",
    "SigningKeySet",
    "TokenVerifier",
    "UserId",
    "UserPrincipal",
    "VerifiedTokenCache",
    "WritingUser",
    "authenticate_token",
    "current_user",
    "install_token_verifier",
    "optional_user",
    "require_role",
    "require_scope",
    "user_id",
    "user_principal",
    "writing_user",
]
