"""Who is calling: the issuers, the role hierarchy and the `Principal` a verified token stands for."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

AUTH_ISSUER = "quark-auth"
HUB_ISSUER = "quark-hub"
DEFAULT_AUDIENCE = "quark"

PrincipalKind = Literal["user", "service"]

# admin ⊇ moderator ⊇ user: a higher rank satisfies every lower one.
_ROLE_RANK: dict[str, int] = {"user": 0, "moderator": 1, "admin": 2}


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
