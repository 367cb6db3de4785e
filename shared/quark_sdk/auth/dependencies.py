"""FastAPI integration: installing the app's verifier and the dependencies routes take principals from."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Annotated, cast

from fastapi import Depends
from starlette.applications import Starlette
from starlette.datastructures import State
from starlette.requests import HTTPConnection

# Own section whether or not ruff is told quark_sdk is first-party:
# isort: split
from quark_sdk.auth.principal import Principal
from quark_sdk.auth.tokens import TokenVerifier
from quark_sdk.errors import PermissionDenied, Unauthenticated

USER_TOKEN_REQUIRED = "a user token is required"  # noqa: S105 - an error text
UNVERIFIED_WRITER = "verify your email address or phone number before writing"


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
