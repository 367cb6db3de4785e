"""Signing keys: one key (`SigningKey`) and an issuer's rotating set of them (`SigningKeySet`)."""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal, cast

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from jwt.algorithms import OKPAlgorithm, RSAAlgorithm

Algorithm = Literal["EdDSA", "RS256"]
PrivateKey = Ed25519PrivateKey | rsa.RSAPrivateKey

ALLOWED_ALGORITHMS: tuple[str, ...] = ("EdDSA", "RS256")
"""Asymmetric only: a verifier must never treat a published key as an HMAC secret."""

DEFAULT_OVERLAP = 3600.0
"""Seconds a retired key keeps verifying; must exceed the longest token lifetime."""

_RSA_BITS = 3072
_MIN_RSA_BITS = 2048


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
