"""HTTP routes of the hub, thin: parse, authorise, call service/identity, shape the response."""

from __future__ import annotations

import base64
import binascii
import hmac
from typing import Annotated
from urllib.parse import parse_qs, unquote_plus

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from fastapi.responses import JSONResponse

from quark_hub import identity, lifecycle, service, traefik
from quark_hub.ratelimit import FixedWindow, client_address
from quark_hub.runtime import HubRuntime
from quark_hub.schemas import (
    ClientCreate,
    ClientCreated,
    ClientPage,
    DiscoveryPage,
    Health,
    HeartbeatResponse,
    HubEventPage,
    ModuleView,
    RegisterRequest,
    RegisterResponse,
    TokenResponse,
)
from quark_sdk.app import RuntimeDep
from quark_sdk.auth import OptionalUser, Principal, authenticate_token, require_role
from quark_sdk.errors import PayloadTooLarge, PermissionDenied, Unauthenticated
from quark_sdk.registry import MODULE_NAME
from quark_sdk.routing import GuardedRoute

MAX_TOKEN_BODY = 8 * 1024


Hub = Annotated[HubRuntime, RuntimeDep]
Admin = Annotated[Principal, Depends(require_role("admin"))]
# A client id is a module name; anything else (a NUL PostgreSQL cannot store included) is a 422, not a 500.
ClientId = Annotated[str, Path(max_length=32, pattern=f"^(?:{MODULE_NAME.pattern})$")]


def caller_address(request: Request, hub: Hub) -> str:
    peer = request.client.host if request.client else None
    return client_address(peer, request.headers.get("x-forwarded-for"), hub.settings.trusted_proxies)


ClientAddr = Annotated[str, Depends(caller_address)]

# Who may see the registry's internals (instance URLs, health, manifests) when env=prod.
READER_ROLES = ("admin", "operator")
READER_SCOPE = "hub:read"


async def internal_reader(hub: Hub, principal: OptionalUser) -> None:
    """In prod, discovery and the dashboard list internal addresses: an admin or operator user token (or a
    service token granted `hub:read`) is required. dev and test stay open (the local station's page)."""
    if hub.settings.env != "prod":
        return
    if principal is None:
        raise Unauthenticated("the registry lists internal addresses: an admin or operator token is required")
    if principal.is_user and any(principal.has_role(r) for r in READER_ROLES):
        return
    if principal.is_service and principal.has_scope(READER_SCOPE):
        return
    raise PermissionDenied("requires role admin or operator (or a service token with scope hub:read)")


Reader = Depends(internal_reader)


async def limit_registration(request: Request, hub: Hub, addr: ClientAddr) -> None:
    """Counted before anything else (so bad and unauthenticated attempts count too)."""
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > hub.settings.max_register_body:
        raise PayloadTooLarge(f"a registration is at most {hub.settings.max_register_body} bytes")
    limiter = FixedWindow(hub.store.redis, hub.store.key("ratelimit", "register"),
                          limit=hub.settings.register_rate_limit, window=hub.settings.register_rate_window,
                          what="registrations")
    await limiter.hit(addr)


async def registration_token(request: Request, hub: Hub) -> None:
    """When `registration_token` is set, registry writes need `Authorization: Bearer <it>`."""
    expected = hub.settings.registration_token
    if expected is None:
        return
    scheme, _, value = request.headers.get("authorization", "").strip().partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(value.strip().encode(),
                                                              expected.get_secret_value().encode()):
        raise Unauthenticated("a valid registration token is required")


MODULE_TOKEN_HEADER = "x-quark-module-token"  # noqa: S105 - a header name


async def registration_identity(request: Request, hub: Hub, addr: ClientAddr) -> str:
    """Who is registering (service.INTERNAL_IDENTITY lists the kinds): a module name stays with its identity."""
    token = request.headers.get(MODULE_TOKEN_HEADER)
    if token:
        principal = await authenticate_token(request, token.strip())
        if not principal.is_service:
            raise Unauthenticated(f"{MODULE_TOKEN_HEADER} must be a hub service token")
        return service.client_identity(principal.subject)
    if hub.settings.registration_token is not None:
        return "token"
    return f"open@{addr}"


# -- registry -----------------------------------------------------------------------------------------

router = APIRouter(prefix="/api/v1/hub", tags=["hub"], route_class=GuardedRoute)


@router.post("/modules/register", status_code=201,
             dependencies=[Depends(limit_registration), Depends(registration_token)])
async def register(body: RegisterRequest, hub: Hub, addr: ClientAddr,
                   identity: Annotated[str, Depends(registration_identity)]) -> RegisterResponse:
    """Dock an instance (or renew one that registers again with its instance_id).

    A module name that is docked stays with the registration identity that docked it (409
    module-name-taken otherwise); one docked with its service token (X-Quark-Module-Token) stays bound to it."""
    return await service.register(hub, body, remote_addr=addr, identity=identity)


@router.delete("/modules/{name}/owner", status_code=204)
async def release_owner(name: str, hub: Hub, _: Admin) -> Response:
    """Unbind a module name from its service client (an admin's decision, e.g. after re-keying a module)."""
    await service.release_owner(hub, name)
    return Response(status_code=204)


@router.put("/modules/{name}/instances/{instance_id}/heartbeat", dependencies=[Depends(registration_token)])
async def heartbeat(name: str, instance_id: str, hub: Hub) -> HeartbeatResponse:
    """Renew the lease; 404 means it lapsed and the instance should register again."""
    return await service.heartbeat(hub, name, instance_id)


@router.delete("/modules/{name}/instances/{instance_id}", status_code=204,
               dependencies=[Depends(registration_token)])
async def deregister(name: str, instance_id: str, hub: Hub) -> Response:
    await service.deregister(hub, name, instance_id)
    return Response(status_code=204)


# -- discovery ----------------------------------------------------------------------------------------


async def _discover(hub: HubRuntime, name: str | None, capability: list[str], health: Health | None, limit: int,
                    cursor: str | None) -> DiscoveryPage:
    return await service.discover(hub, name=name, capabilities=capability, health=health, limit=limit,
                                  cursor=cursor)


NameQ = Annotated[str | None, Query(max_length=64, description="exact module name")]
CapabilityQ = Annotated[list[str], Query(
    max_length=16,
    description="repeatable, all must match: database|event_bus|cache|storage (requires), quark.<domain>.<event> "
                "(publishes), /path (serves it), consumes:<event type>, scope:<scope>")]
HealthQ = Annotated[Health | None, Query(description="only instances in this state (and modules having one)")]
LimitQ = Annotated[int, Query(ge=1, le=500)]
CursorQ = Annotated[str | None, Query(max_length=64)]


@router.get("/services", dependencies=[Reader])
async def services(hub: Hub, name: NameQ = None, capability: CapabilityQ = [],  # noqa: B006 - FastAPI query
                   health: HealthQ = None, limit: LimitQ = 100, cursor: CursorQ = None) -> DiscoveryPage:
    """Docked modules: manifests, instances, health, last heartbeat, events published and consumed."""
    return await _discover(hub, name, capability, health, limit, cursor)


@router.get("/services/{name}", dependencies=[Reader])
async def service_detail(name: str, hub: Hub) -> ModuleView:
    return await service.describe(hub, name)


@router.get("/events", dependencies=[Reader])
async def recent_events(hub: Hub, limit: Annotated[int, Query(ge=1, le=1000)] = 50) -> HubEventPage:
    """The latest quark.hub.module.* events, newest first (the same ones published on NATS)."""
    return await service.recent_events(hub, limit)


discovery_router = APIRouter(tags=["hub"])


@discovery_router.get("/modules/discovery", dependencies=[Reader])
async def discovery(hub: Hub, name: NameQ = None, capability: CapabilityQ = [],  # noqa: B006 - FastAPI query
                    health: HealthQ = None, limit: LimitQ = 100, cursor: CursorQ = None) -> DiscoveryPage:
    """Same as GET /api/v1/hub/services (the path DESIGN §3 gives discovery)."""
    return await _discover(hub, name, capability, health, limit, cursor)


# -- Traefik ------------------------------------------------------------------------------------------


@router.get("/traefik/config")
async def traefik_config(hub: Hub) -> JSONResponse:
    """Dynamic configuration for Traefik's HTTP provider (`providers.http.endpoint`)."""
    snap = await hub.store.snapshot()
    states = await lifecycle.load_all(hub)  # disabled modules and retired versions get no routes
    pools = {m.name: lifecycle.pools(m, states.get(m.name)) for m in snap.modules}
    return JSONResponse(traefik.build_config(lifecycle.routed_modules(snap, states), hub.settings, pools),
                        headers={"Cache-Control": "no-store"})


# -- identity -----------------------------------------------------------------------------------------

_TOKEN_FORM = {
    "requestBody": {"required": True, "content": {"application/x-www-form-urlencoded": {"schema": {
        "type": "object", "required": ["grant_type"],
        "properties": {
            "grant_type": {"type": "string", "enum": ["client_credentials"]},
            "client_id": {"type": "string"}, "client_secret": {"type": "string"},
            "scope": {"type": "string", "description": "space-separated scopes"},
            "audience": {"type": "string", "description": "the token's aud (default: quark)"},
        }}}}},
}


def _basic_credentials(header: str | None) -> tuple[str, str] | None:
    if not header:
        return None
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() != "basic":
        raise identity.OAuthError("invalid_request", "client credentials go in HTTP Basic or in the form")
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise identity.invalid_client() from None
    user, sep, password = decoded.partition(":")
    if not sep:
        raise identity.invalid_client()
    # RFC 6749 §2.3.1: both parts are form-urlencoded before Basic encoding.
    return unquote_plus(user), unquote_plus(password)


async def _token_request(request: Request) -> identity.TokenRequest:
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != "application/x-www-form-urlencoded":
        raise identity.OAuthError("invalid_request", "send the request as application/x-www-form-urlencoded")
    body = await request.body()
    if len(body) > MAX_TOKEN_BODY:
        raise identity.OAuthError("invalid_request", "request too large")
    try:
        form = parse_qs(body.decode("utf-8"), keep_blank_values=True, max_num_fields=16)
    except (UnicodeDecodeError, ValueError):
        raise identity.OAuthError("invalid_request", "malformed form body") from None
    repeated = sorted(k for k, v in form.items() if len(v) > 1)
    if repeated:
        raise identity.OAuthError("invalid_request", f"parameter {repeated[0][:30]} given more than once")
    values = {k: v[0] for k, v in form.items()}
    if not values.get("grant_type"):
        raise identity.OAuthError("invalid_request", "grant_type is required")
    basic = _basic_credentials(request.headers.get("authorization"))
    if basic is not None and "client_secret" in values:
        raise identity.OAuthError("invalid_request", "use one client authentication method, not two")
    client_id, secret = basic if basic is not None else (values.get("client_id", ""), values.get("client_secret", ""))
    if basic is not None and values.get("client_id", client_id) != client_id:
        raise identity.OAuthError("invalid_request", "client_id differs from the authenticated client")
    if not client_id or not secret:
        raise identity.invalid_client()
    return identity.TokenRequest(grant_type=values["grant_type"], client_id=client_id[:256],
                                 client_secret=secret[:1024], scope=values.get("scope"),
                                 audience=values.get("audience") or None, basic=basic is not None)


@router.post("/token", openapi_extra=_TOKEN_FORM, response_model=TokenResponse)
async def token(request: Request, hub: Hub, addr: ClientAddr) -> JSONResponse:
    """OAuth2 client credentials → a short-lived service JWT (verify it with the JWKS below)."""
    issued = await identity.issue_token(hub, await _token_request(request), client_addr=addr)
    return JSONResponse(issued.model_dump(), headers={"Cache-Control": "no-store", "Pragma": "no-cache"})


@router.get("/.well-known/jwks.json")
async def jwks(hub: Hub) -> JSONResponse:
    """The hub's public signing keys (active and still-valid retired ones)."""
    return JSONResponse(hub.keys.jwks(), headers={"Cache-Control": "public, max-age=60"})


@router.post("/clients", status_code=201)
async def create_client(body: ClientCreate, hub: Hub, _: Admin) -> ClientCreated:
    """Provision a module's client; the secret is returned once (generated unless given)."""
    return await identity.create_client(hub, body)


@router.get("/clients")
async def list_clients(hub: Hub, _: Admin) -> ClientPage:
    return await identity.list_clients(hub)


@router.delete("/clients/{client_id}", status_code=204)
async def delete_client(client_id: ClientId, hub: Hub, _: Admin) -> Response:
    await identity.delete_client(hub, client_id)
    return Response(status_code=204)


@router.post("/clients/{client_id}/secret")
async def rotate_client_secret(client_id: ClientId, hub: Hub, _: Admin) -> ClientCreated:
    """A new secret for the client; the old one stops working at once."""
    return await identity.rotate_secret(hub, client_id)

