"""HTTP route of the event-contract view (quark_hub.contracts): thin."""

from __future__ import annotations

from fastapi import APIRouter

from quark_hub import contracts
from quark_hub.api import Hub, Reader
from quark_hub.contracts import ContractsView
from quark_sdk.routing import GuardedRoute

router = APIRouter(prefix="/api/v1/hub", tags=["hub"], route_class=GuardedRoute)


@router.get("/contracts", dependencies=[Reader])
async def event_contracts(hub: Hub) -> ContractsView:
    """Every event as a docked module publishes it and another consumes it: compatible, incompatible (with the
    fields and why) or unchecked (a side declares no schema). The hub refuses docking that breaks a pair
    unless QUARK_HUB_CONTRACT_CHECK=warn|off."""
    return await contracts.view(hub)
