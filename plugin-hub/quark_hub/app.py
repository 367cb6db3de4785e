"""The hub as a Quark module: routers, start-up (keys, runtime, client provisioning) and background jobs."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path

from fastapi import FastAPI

from quark_hub import api, contracts_api, dashboard, identity, lifecycle_api, operator, service
from quark_hub.models import Base
from quark_hub.monitor import run_monitor
from quark_hub.registry_store import RegistryStore
from quark_hub.runtime import HubRuntime, stop_if_cancelled
from quark_hub.schemas import RegisterRequest
from quark_hub.settings import HubSettings
from quark_sdk.app import QuarkModule, ServiceContext, create_service_app
from quark_sdk.errors import NotFound

log = logging.getLogger("quark.hub")


HubContext = ServiceContext[HubSettings, HubRuntime]


async def build_runtime(ctx: HubContext) -> HubRuntime:
    settings = ctx.settings
    store = RegistryStore(ctx.cache(), ctx.key)
    keys = await identity.load_signing_keys(settings, store)
    return HubRuntime(ctx=ctx, settings=settings, store=store, keys=keys)


async def start_hub(ctx: HubContext) -> None:
    rt, settings = ctx.runtime, ctx.settings
    if settings.should_provision_clients:
        await identity.provision_from_secret_store(rt)
    # HubSettings refuses env=prod without QUARK_HUB_REGISTRATION_TOKEN; elsewhere an open registry is a choice.
    if settings.registration_token is None:
        log.info("no registration token: any caller that reaches the hub may dock a module (env=%s)", settings.env)


async def keep_self_docked(ctx: HubContext) -> None:
    """Background job: the hub is a module too, registered in its own registry in-process (never over HTTP)."""
    rt = ctx.runtime
    if not rt.settings.self_dock:
        return
    request = RegisterRequest(manifest=ctx.manifest.with_contracts(), instance_url=rt.settings.public_instance_url(),
                              health_url=ctx.health_url)
    while True:
        stop_if_cancelled()
        try:
            if rt.self_instance_id is None:
                docked = await service.register(rt, request)
                rt.self_instance_id = docked.instance_id
            else:
                try:
                    await service.heartbeat(rt, ctx.name, rt.self_instance_id)
                except NotFound:
                    docked = await service.register(rt, request.model_copy(
                        update={"instance_id": rt.self_instance_id}))
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("could not dock the hub in its own registry: %r", exc)
        await asyncio.sleep(rt.settings.heartbeat_every)


async def stop_hub(ctx: HubContext) -> None:
    rt = ctx.runtime
    if rt.self_instance_id is not None:
        with contextlib.suppress(Exception):
            await service.deregister(rt, ctx.name, rt.self_instance_id)
        rt.self_instance_id = None


module = QuarkModule(
    name="hub",
    settings_cls=HubSettings,
    root=Path(__file__).resolve().parent.parent,
    runtime=build_runtime,
    routers=[api.router, lifecycle_api.router, api.discovery_router, contracts_api.router, dashboard.router,
             operator.router],
    metadata=Base.metadata,
    on_startup=[start_hub],
    on_shutdown=[stop_hub],
    background=[run_monitor, dashboard.run_broadcaster, keep_self_docked],
    title="Quark Plugin Hub",
)


def create_app() -> FastAPI:
    return create_service_app(module)
