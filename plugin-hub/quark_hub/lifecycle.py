"""Docking as a live operation: enable, disable (drain), weighted traffic between versions, upgrade, remove.

A module's lifecycle document lives in the hub's store (Redis hash `lifecycle`: name -> JSON), beside the
registry, so it survives a restart of the hub and of the station. The registry itself is unchanged: this
module decides which docked instances the gateways may route to (`routed`), what a heartbeat tells an
instance to do (`action_for`: serve, or drain), and whether a registration is admitted (`check_admission`).

Every change is staged in the hub's outbox with the actor's id (the audit trail) and announced on the
dashboard, like the registry's own events.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from quark_hub import events
from quark_hub.lifecycle_schemas import (
    InstanceAction,
    LifecycleEvent,
    LifecycleInstance,
    LifecycleState,
    LifecycleView,
    ModuleDisabled,
    ModuleEnabled,
    ModuleInstalled,
    ModuleRemoved,
    ModuleTrafficShifted,
    ModuleUpgraded,
)
from quark_hub.registry_store import InstanceRecord, ModuleRecord, Snapshot
from quark_hub.runtime import HubRuntime
from quark_sdk.auth import Principal
from quark_sdk.errors import InvalidInput, NotFound, QuarkError
from quark_sdk.outbox import add_event
from quark_sdk.registry import MODULE_NAME, Manifest

HUB_SERVICE = "hub"  # the subject of the hub's own service credential


class Locked(QuarkError):
    """423: the module is disabled or removed, or this version was retired by an upgrade: do not dock now."""

    status, code, title = 423, "module-disabled", "Module not admitted"


@dataclass
class Lifecycle:
    name: str
    state: LifecycleState = "enabled"
    weights: dict[str, int] = field(default_factory=dict)
    retired: list[str] = field(default_factory=list)
    installed: dict[str, str] | None = None
    updated_at: float | None = None
    updated_by: str | None = None

    def routed(self, inst: InstanceRecord) -> bool:
        """May the gateways send this instance traffic? (weights decide how much, see `pools`.)"""
        return self.state == "enabled" and inst.version not in self.retired and inst.routable

    def action_for(self, inst: InstanceRecord) -> InstanceAction:
        return "drain" if self.state != "enabled" or inst.version in self.retired else "serve"


def actor_id(principal: Principal) -> str:
    return principal.subject if principal.is_user else f"service:{principal.subject}"


def is_lifecycle_admin(principal: Principal) -> bool:
    """A user with role admin, or the hub's own service credential (the CLI on the station's host)."""
    return (principal.is_user and principal.has_role("admin")) or (
        principal.is_service and principal.subject == HUB_SERVICE)


# -- store --------------------------------------------------------------------------------------------


def _key(rt: HubRuntime) -> str:
    return rt.store.key("lifecycle")


async def load(rt: HubRuntime, name: str) -> Lifecycle:
    raw = await rt.store.redis.hget(_key(rt), name)
    return Lifecycle(**json.loads(raw)) if raw else Lifecycle(name=name)


async def load_all(rt: HubRuntime) -> dict[str, Lifecycle]:
    raw = await rt.store.redis.hgetall(_key(rt))
    docs = [Lifecycle(**json.loads(v)) for v in raw.values()]
    return {lc.name: lc for lc in docs}


async def _save(rt: HubRuntime, lc: Lifecycle, actor: str) -> None:
    lc.updated_at, lc.updated_by = time.time(), actor
    await rt.store.redis.hset(_key(rt), lc.name, json.dumps(asdict(lc)))


# -- what the registry asks ---------------------------------------------------------------------------


async def check_admission(rt: HubRuntime, manifest: Manifest) -> None:
    """Called by register: a disabled or removed module, or a retired version, does not dock (423)."""
    lc = await load(rt, manifest.name)
    if lc.state == "disabled":
        raise Locked(f"module {manifest.name} is disabled; it docks again once enabled "
                     f"(POST /api/v1/hub/modules/{manifest.name}/enable)", code="module-disabled")
    if lc.state == "removed":
        raise Locked(f"module {manifest.name} was removed from the station; install it again to dock it",
                     code="module-removed")
    if manifest.version in lc.retired:
        raise Locked(f"version {manifest.version} of {manifest.name} was retired by an upgrade",
                     code="version-retired")


async def action_for(rt: HubRuntime, inst: InstanceRecord) -> InstanceAction:
    return (await load(rt, inst.module)).action_for(inst)


def pools(module: ModuleRecord, lc: Lifecycle | None) -> list[tuple[str, int, list[str]]]:
    """(version, weight, server URLs) the gateways route this module's traffic to; "*" = one equal pool."""
    lc = lc or Lifecycle(name=module.name)
    live = [i for i in module.instances if lc.routed(i)]
    if not lc.weights:
        servers = sorted({i.instance_url for i in live})
        return [("*", 1, servers)] if servers else []
    out = []
    for version, weight in sorted(lc.weights.items()):
        servers = sorted({i.instance_url for i in live if i.version == version})
        if weight > 0 and servers:
            out.append((version, weight, servers))
    return out


def routed_modules(snapshot: Snapshot, states: Mapping[str, Lifecycle]) -> list[ModuleRecord]:
    """The snapshot as the gateways see it: disabled/removed modules and retired versions left out."""
    out = []
    for m in snapshot.modules:
        lc = states.get(m.name) or Lifecycle(name=m.name)
        out.append(ModuleRecord(m.name, m.manifest, m.updated_at, [i for i in m.instances if lc.routed(i)]))
    return out


async def gateway_table(rt: HubRuntime) -> dict[str, Any]:
    """What the embedded gateway routes by (GET /api/v1/hub/routes): every module's state and weighted pools."""
    snap = await rt.store.snapshot()
    states = await load_all(rt)
    modules: list[dict[str, Any]] = []
    for m in snap.modules:
        lc = states.get(m.name)
        modules.append({"name": m.name, "state": lc.state if lc else "enabled", "prefixes": m.manifest.exposes.api,
                        "pools": [{"version": v, "weight": w, "servers": s} for v, w, s in pools(m, lc)]})
    for name, lc in states.items():  # disabled/removed modules whose instances are gone: still "not routed"
        if lc.state != "enabled" and snap.module(name) is None:
            modules.append({"name": name, "state": lc.state, "prefixes": [], "pools": []})
    return {"generated_at": snap.taken_at, "modules": modules}


# -- admin operations ---------------------------------------------------------------------------------


async def _known(rt: HubRuntime, name: str) -> Snapshot:
    snap = await rt.store.snapshot()
    if not MODULE_NAME.fullmatch(name) or (
            snap.module(name) is None and name not in await rt.store.known_module_names()
            and not await rt.store.redis.hexists(_key(rt), name)):
        raise NotFound(f"no module named {name[:40]!r} is known to the hub", code="unknown-module")
    return snap


async def _publish(rt: HubRuntime, lc: Lifecycle, actor: str, payload: LifecycleEvent | None) -> None:
    """Save the document and stage its event in one database transaction (the outbox), then announce it."""
    staged = []
    async with rt.db.transaction() as session:
        await _save(rt, lc, actor)
        if payload is not None:
            staged.append(await add_event(session, payload, subject=lc.name))
    await events.announce(rt, staged)
    await rt.store.notify("lifecycle")


async def view(rt: HubRuntime, name: str, snap: Snapshot | None = None) -> LifecycleView:
    snap = snap or await _known(rt, name)
    lc = await load(rt, name)
    module = snap.module(name)
    instances = [LifecycleInstance(instance_id=i.instance_id, version=i.version, instance_url=i.instance_url,
                                   health=i.health, routed=lc.routed(i))
                 for i in (module.instances if module else [])]
    return LifecycleView(name=name, state=lc.state, weights=lc.weights, retired=lc.retired, installed=lc.installed,
                         updated_at=datetime.fromtimestamp(lc.updated_at, UTC) if lc.updated_at else None,
                         updated_by=lc.updated_by, instances=instances)


async def record_installed(rt: HubRuntime, name: str, version: str, source: str, actor: str) -> LifecycleView:
    if not MODULE_NAME.fullmatch(name):
        raise InvalidInput("a module name is 2-32 lowercase letters, digits and '-'", field="name")
    lc = await load(rt, name)
    lc.installed = {"version": version, "source": source}
    lc.retired = [v for v in lc.retired if v != version]  # installing a version again brings it back
    if lc.state == "removed":
        lc.state, lc.weights = "enabled", {}
    await _publish(rt, lc, actor, ModuleInstalled(module=name, actor_id=actor, version=version, source=source))
    return await view(rt, name)


async def set_state(rt: HubRuntime, name: str, state: LifecycleState, actor: str) -> LifecycleView:
    """enable / disable; idempotent (no event when nothing changes)."""
    snap = await _known(rt, name)
    if name == HUB_SERVICE:
        raise InvalidInput("the hub cannot be disabled: it is what docks the others", field="name")
    lc = await load(rt, name)
    if lc.state == "removed" and state == "enabled":
        raise Locked(f"module {name} was removed; install it again", code="module-removed")
    if lc.state != state:
        lc.state = state
        payload = (ModuleEnabled if state == "enabled" else ModuleDisabled)(module=name, actor_id=actor)
        await _publish(rt, lc, actor, payload)
    return await view(rt, name, snap)


def _live_versions(snap: Snapshot, name: str) -> set[str]:
    module = snap.module(name)
    return {i.version for i in (module.instances if module else []) if i.routable}


async def set_traffic(rt: HubRuntime, name: str, weights: dict[str, int], actor: str) -> LifecycleView:
    snap = await _known(rt, name)
    lc = await load(rt, name)
    live = _live_versions(snap, name)
    for version, weight in weights.items():
        if weight > 0 and (version not in live or version in lc.retired):
            raise InvalidInput(f"version {version} of {name} has no routable instance to send traffic to",
                               field=f"weights.{version}")
    if weights != lc.weights:
        lc.weights = dict(weights)
        await _publish(rt, lc, actor, ModuleTrafficShifted(module=name, actor_id=actor, weights=lc.weights))
    return await view(rt, name, snap)


async def finish_upgrade(rt: HubRuntime, name: str, to_version: str, actor: str) -> LifecycleView:
    """All traffic to `to_version`; every other docked version is retired and drains on its next heartbeat."""
    snap = await _known(rt, name)
    lc = await load(rt, name)
    if to_version not in _live_versions(snap, name):
        raise InvalidInput(f"version {to_version} of {name} has no routable instance", field="to_version")
    module = snap.module(name)
    old = sorted({i.version for i in (module.instances if module else [])} - {to_version})
    lc.retired = sorted(set(lc.retired) | set(old))
    lc.weights = {}
    await _publish(rt, lc, actor, ModuleUpgraded(module=name, actor_id=actor, from_versions=old,
                                                  to_version=to_version))
    return await view(rt, name, snap)


async def remove(rt: HubRuntime, name: str, purge_data: bool, actor: str) -> LifecycleView:
    """Drain every instance and forget the module (manifest, owner); a tombstone keeps it from docking again."""
    snap = await _known(rt, name)
    if name == HUB_SERVICE:
        raise InvalidInput("the hub cannot be removed", field="name")
    lc = await load(rt, name)
    lc.state, lc.weights, lc.retired = "removed", {}, []
    await _publish(rt, lc, actor, ModuleRemoved(module=name, actor_id=actor, purge_data=purge_data))
    await rt.store.redis.hdel(rt.store.key("manifests"), name)
    await rt.store.release_owner(name)
    return await view(rt, name, snap)
