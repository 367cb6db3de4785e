"""HTTP routes of the module lifecycle (docs/hub.md, "Module lifecycle"): thin, admin-only writes."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query
from fastapi.responses import JSONResponse

from quark_hub import lifecycle
from quark_hub.api import Hub, Reader
from quark_hub.lifecycle_schemas import InstalledRequest, LifecycleView, TrafficRequest, UpgradeRequest
from quark_sdk.auth import OptionalUser
from quark_sdk.errors import PermissionDenied, Unauthenticated
from quark_sdk.routing import GuardedRoute

ModuleName = Annotated[str, Path(max_length=32, pattern=r"^[a-z][a-z0-9-]{1,31}$")]


async def lifecycle_admin(principal: OptionalUser) -> str:
    """The actor id of an admin (user role admin, or the hub's own service credential); 401/403 otherwise."""
    if principal is None:
        raise Unauthenticated("module lifecycle operations need an admin token")
    if not lifecycle.is_lifecycle_admin(principal):
        raise PermissionDenied("module lifecycle operations need role admin (or the hub's service credential)")
    return lifecycle.actor_id(principal)


Actor = Annotated[str, Depends(lifecycle_admin)]


router = APIRouter(prefix="/api/v1/hub", tags=["hub lifecycle"], route_class=GuardedRoute)


@router.get("/modules/{name}/lifecycle", dependencies=[Reader])
async def get_lifecycle(name: ModuleName, hub: Hub) -> LifecycleView:
    """State (enabled/disabled/removed), traffic weights, retired versions and which instances are routed."""
    return await lifecycle.view(hub, name)


@router.post("/modules/{name}/installed")
async def installed(name: ModuleName, body: InstalledRequest, hub: Hub, actor: Actor) -> LifecycleView:
    """Record an installation (the CLI, after pip install and migrations); a removed module may dock again."""
    return await lifecycle.record_installed(hub, name, body.version, body.source, actor)


@router.post("/modules/{name}/enable")
async def enable(name: ModuleName, hub: Hub, actor: Actor) -> LifecycleView:
    return await lifecycle.set_state(hub, name, "enabled", actor)


@router.post("/modules/{name}/disable")
async def disable(name: ModuleName, hub: Hub, actor: Actor) -> LifecycleView:
    """Drain: routes leave the gateways now; instances stop consuming and deregister on their next heartbeat."""
    return await lifecycle.set_state(hub, name, "disabled", actor)


@router.put("/modules/{name}/traffic")
async def traffic(name: ModuleName, body: TrafficRequest, hub: Hub, actor: Actor) -> LifecycleView:
    """Weighted split between docked versions (Traefik weighted services; the embedded gateway likewise)."""
    return await lifecycle.set_traffic(hub, name, body.weights, actor)


@router.post("/modules/{name}/upgrade")
async def upgrade(name: ModuleName, body: UpgradeRequest, hub: Hub, actor: Actor) -> LifecycleView:
    """Finish an upgrade: all traffic to `to_version`, every other version retired (drained)."""
    return await lifecycle.finish_upgrade(hub, name, body.to_version, actor)


@router.delete("/modules/{name}")
async def remove(name: ModuleName, hub: Hub, actor: Actor,
                 purge_data: Annotated[bool, Query()] = False) -> LifecycleView:
    """Drain every instance and forget the module; it docks again only after an install."""
    return await lifecycle.remove(hub, name, purge_data, actor)


@router.get("/routes")
async def routes(hub: Hub) -> JSONResponse:
    """The routing table of the embedded gateway (like /traefik/config: internal network only)."""
    return JSONResponse(await lifecycle.gateway_table(hub), headers={"Cache-Control": "no-store"})
