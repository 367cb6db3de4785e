"""The registry's behaviour: register, renew, deregister, discover. Plain functions, no HTTP types.

Registry changes and the events announcing them happen together: the event is staged in the hub's
outbox inside a database transaction that also wraps the Redis write, so a failed write publishes
nothing and a failed commit leaves a caller who retries.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from urllib.parse import urlsplit

from quark_hub import contracts, events, lifecycle
from quark_hub.registry_store import InstanceRecord, ModuleRecord, Snapshot
from quark_hub.runtime import HubRuntime
from quark_hub.schemas import (
    DiscoveryPage,
    Health,
    HeartbeatResponse,
    HubEventPage,
    HubEventView,
    InstanceView,
    ModuleDocked,
    ModuleUndocked,
    ModuleView,
    RegisterRequest,
    RegisterResponse,
)
from quark_sdk.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from quark_sdk.events import CloudEvent
from quark_sdk.registry import MODULE_NAME, Manifest

REQUIREMENTS = ("database", "event_bus", "cache", "storage")

# Registration identities (who docked a module's instances), strongest first:
#   client:<name>  the module's own service token (hub-issued, sub = the module), sent as X-Quark-Module-Token;
#                  binds the name to that client for good (only it, or an admin release, docks it again)
#   token          the station's shared registration token
#   open@<addr>    an open registry (dev): the caller's address
#   internal       the hub docking itself, in-process
INTERNAL_IDENTITY = "internal"


def client_identity(name: str) -> str:
    return f"client:{name}"


def ts(value: float) -> datetime:
    return datetime.fromtimestamp(value, UTC)


def _origin(url: str) -> tuple[str, str, int]:
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return parts.scheme, (parts.hostname or "").lower(), port


def _overlaps(a: str, b: str) -> bool:
    return a == b or a.startswith(b + "/") or b.startswith(a + "/")


def _unknown_instance(name: str, instance_id: str) -> NotFound:
    return NotFound(f"no live instance {instance_id} of module {name} (unknown, deregistered or lease expired);"
                    " register again", code="unknown-instance")


# -- registration ------------------------------------------------------------------------------------


async def register(rt: HubRuntime, req: RegisterRequest, *, remote_addr: str = "",
                   identity: str = INTERNAL_IDENTITY) -> RegisterResponse:
    """Dock an instance, or renew a live one that registers again with its id (the SDK does after a 404)."""
    manifest = req.manifest
    health_url = req.health_url or req.instance_url + manifest.health_check
    if not rt.settings.allow_foreign_health_urls and _origin(health_url) != _origin(req.instance_url):
        raise InvalidInput("health_url must be on the same scheme, host and port as instance_url",
                           field="health_url")
    if identity.startswith("client:") and identity != client_identity(manifest.name):
        raise PermissionDenied(f"a service token of {identity.removeprefix('client:')} cannot dock module "
                               f"{manifest.name}", code="module-identity-mismatch")
    await lifecycle.check_admission(rt, manifest)  # disabled, removed or retired: 423, nothing docks
    snapshot = await rt.store.snapshot()
    await _check_identity(rt, snapshot, manifest.name, identity)
    _check_prefixes(snapshot, manifest)
    contracts.check_docking(rt, snapshot, manifest)
    now, ttl = time.time(), rt.settings.lease_ttl
    existing = await rt.store.get_instance(manifest.name, req.instance_id) if req.instance_id else None
    payloads: list[ModuleDocked | ModuleUndocked] = []
    superseded: list[InstanceRecord] = []
    lapsed = False
    if existing is not None:
        record = replace(existing, version=manifest.version, instance_url=req.instance_url, health_url=health_url,
                         last_heartbeat=now, lease_ttl=ttl, remote_addr=remote_addr)
    else:
        instance_id = req.instance_id or uuid.uuid4().hex
        lapsed = req.instance_id is not None and await rt.store.is_indexed(manifest.name, instance_id)
        module = snapshot.module(manifest.name)
        # Two registrations at one address are one endpoint: the newer process replaced the older one.
        superseded = [i for i in (module.instances if module else [])
                      if i.instance_url == req.instance_url and i.instance_id != instance_id]
        record = InstanceRecord(
            instance_id=instance_id, module=manifest.name, version=manifest.version,
            instance_url=req.instance_url, health_url=health_url, registered_at=now, last_heartbeat=now,
            lease_ttl=ttl, health="healthy", health_since=now, remote_addr=remote_addr, identity=identity,
        )
    staged: list[CloudEvent] = []
    async with rt.db.transaction() as session:
        if lapsed and await rt.store.forget_expired(manifest.name, record.instance_id) is not None:
            staged.append(await events.stage(session, ModuleUndocked(
                module=manifest.name, instance_id=record.instance_id, instance_url=req.instance_url,
                reason="lease_expired")))
        for old in superseded:
            gone = await rt.store.remove(manifest.name, old.instance_id)
            if gone is not None:
                payloads.append(ModuleUndocked(module=gone.module, instance_id=gone.instance_id,
                                               instance_url=gone.instance_url, reason="replaced",
                                               last_health=gone.health))
        if existing is None:
            payloads.append(ModuleDocked(
                module=manifest.name, instance_id=record.instance_id, instance_url=record.instance_url,
                health_url=health_url, version=manifest.version, api=list(manifest.exposes.api),
                publishes=list(manifest.exposes.events), consumes=list(manifest.consumes)))
        for payload in payloads:
            staged.append(await events.stage(session, payload))
        await rt.store.put_instance(manifest, record)
        if identity.startswith("client:"):
            await rt.store.bind_owner(manifest.name, identity)
    await events.announce(rt, staged)
    if not staged:
        await rt.store.notify("registry")
    return RegisterResponse(instance_id=record.instance_id, module=manifest.name, lease_ttl=ttl,
                            heartbeat_interval=rt.settings.heartbeat_every, docked=existing is None)


async def _check_identity(rt: HubRuntime, snapshot: Snapshot, name: str, identity: str) -> None:
    """A module name belongs to whoever docked it: another registration identity may not take it over (its
    instances would join the module's load balancer and its manifest would replace the module's routes)."""
    owner = await rt.store.owner(name)
    module = snapshot.module(name)
    holders = {i.identity for i in (module.instances if module else []) if i.identity}
    taken_by = owner if owner is not None and owner != identity else next(
        (h for h in sorted(holders) if h != identity), None)
    if taken_by is not None:
        raise Conflict(f"module {name} is docked under another registration identity; it cannot be taken over"
                       + (f" (an admin may release the name: DELETE /api/v1/hub/modules/{name}/owner)"
                          if owner is not None else " while its instances are live"),
                       code="module-name-taken")


async def release_owner(rt: HubRuntime, name: str) -> None:
    if not MODULE_NAME.fullmatch(name) or not await rt.store.release_owner(name):
        raise NotFound(f"module {name[:40]!r} is not bound to a service client", code="unknown-module")


def _check_prefixes(snapshot: Snapshot, manifest: Manifest) -> None:
    """A route prefix belongs to one module: a second claimant would steal its traffic at the gateway."""
    for other in snapshot.modules:
        if other.name == manifest.name or not other.instances:
            continue
        for mine in manifest.exposes.api:
            for theirs in other.manifest.exposes.api:
                if _overlaps(mine, theirs):
                    raise Conflict(f"route prefix {mine} overlaps {theirs}, which module {other.name} serves",
                                   code="route-conflict",
                                   extra={"errors": [{"field": "manifest.exposes.api",
                                                      "message": f"{mine} overlaps {theirs} of {other.name}"}]})


async def heartbeat(rt: HubRuntime, name: str, instance_id: str) -> HeartbeatResponse:
    """Renew a lease; NotFound tells the SDK client to register again."""
    if not MODULE_NAME.fullmatch(name):
        raise _unknown_instance(name[:40], instance_id[:70])
    ttl = rt.settings.lease_ttl
    record = await rt.store.renew(name, instance_id, now=time.time(), lease_ttl=ttl)
    if record is None:
        raise _unknown_instance(name, instance_id)
    return HeartbeatResponse(instance_id=instance_id, lease_ttl=ttl, health=record.health,
                             action=await lifecycle.action_for(rt, record))


async def deregister(rt: HubRuntime, name: str, instance_id: str) -> None:
    if not MODULE_NAME.fullmatch(name):
        raise _unknown_instance(name[:40], instance_id[:70])
    if await rt.store.get_instance(name, instance_id) is None:
        raise _unknown_instance(name, instance_id)
    async with rt.db.transaction() as session:
        gone = await rt.store.remove(name, instance_id)
        if gone is None:  # expired or removed between the two reads
            raise _unknown_instance(name, instance_id)
        staged = [await events.stage(session, ModuleUndocked(
            module=name, instance_id=instance_id, instance_url=gone.instance_url, reason="deregistered",
            last_health=gone.health))]
    await events.announce(rt, staged)


# -- discovery ---------------------------------------------------------------------------------------


def subject_matches(pattern: str, subject: str) -> bool:
    """NATS wildcard semantics: `*` is one token, `>` one or more trailing tokens."""
    p, s = pattern.split("."), subject.split(".")
    for i, tok in enumerate(p):
        if tok == ">":
            return len(s) > i
        if i >= len(s) or (tok != "*" and tok != s[i]):
            return False
    return len(p) == len(s)


def check_capability(capability: str) -> str:
    """Reject a capability filter of no known form (so a typo is a 422, not an empty list)."""
    c = capability.strip()
    ok = (c in REQUIREMENTS or c.startswith("/") or c.startswith("quark.")
          or (c.startswith(("consumes:", "scope:")) and len(c.split(":", 1)[1]) > 0))
    if not ok or len(c) > 200:
        raise InvalidInput(
            f"unknown capability {c[:60]!r}: use one of {', '.join(REQUIREMENTS)}, an event type (quark.x.y), "
            "a path (/api/v1/...), consumes:<event type> or scope:<scope>", field="capability")
    return c


def has_capability(manifest: Manifest, capability: str) -> bool:
    """What `?capability=` means: a requirement, a published event, a served path, a consumed event, a scope."""
    if capability in REQUIREMENTS:
        return bool(getattr(manifest.requires, capability))
    if capability.startswith("/"):
        return any(capability == p or capability.startswith(p + "/") for p in manifest.exposes.api)
    if capability.startswith("quark."):
        return any(subject_matches(p, capability) for p in manifest.exposes.events)
    kind, _, value = capability.partition(":")
    if kind == "consumes":
        return any(subject_matches(p, value) for p in manifest.consumes)
    if kind == "scope":
        return value in manifest.scopes
    return False


def instance_view(i: InstanceRecord, now: float) -> InstanceView:
    return InstanceView(
        instance_id=i.instance_id, module=i.module, version=i.version, instance_url=i.instance_url,
        health_url=i.health_url, health=i.health, health_since=ts(i.health_since), registered_at=ts(i.registered_at),
        last_heartbeat=ts(i.last_heartbeat), lease_expires_at=ts(i.lease_expires_at),
        uptime_seconds=round(max(0.0, now - i.registered_at), 1),
        last_probe_at=ts(i.last_probe_at) if i.last_probe_at else None, latency_ms=i.latency_ms,
        consecutive_failures=i.failures, last_error=i.last_error,
    )


def module_view(m: ModuleRecord, now: float, instances: Sequence[InstanceRecord] | None = None) -> ModuleView:
    mf = m.manifest
    last = m.last_heartbeat
    return ModuleView(
        name=m.name, version=mf.version, type=mf.type, description=mf.description, health=m.health,
        api=list(mf.exposes.api), publishes=list(mf.exposes.events), consumes=list(mf.consumes),
        requires=mf.requires.model_dump(), scopes=list(mf.scopes), last_heartbeat=ts(last) if last else None,
        instances=[instance_view(i, now) for i in (m.instances if instances is None else instances)],
        manifest=mf.model_dump(mode="json"),
    )


async def discover(rt: HubRuntime, *, name: str | None = None, capabilities: Sequence[str] = (),
                   health: Health | None = None, limit: int = 100, cursor: str | None = None) -> DiscoveryPage:
    """Modules in name order (keyset on the name); `health` keeps only instances in that state."""
    caps = [check_capability(c) for c in capabilities]
    snap = await rt.store.snapshot()
    items: list[ModuleView] = []
    next_cursor: str | None = None
    for m in snap.modules:
        if not m.instances or (name is not None and m.name != name) or (cursor is not None and m.name <= cursor):
            continue
        if not all(has_capability(m.manifest, c) for c in caps):
            continue
        chosen = [i for i in m.instances if health is None or i.health == health]
        if not chosen:
            continue
        if len(items) == limit:
            next_cursor = items[-1].name
            break
        items.append(module_view(m, snap.taken_at, chosen))
    return DiscoveryPage(items=items, next_cursor=next_cursor, generated_at=ts(snap.taken_at))


async def describe(rt: HubRuntime, name: str) -> ModuleView:
    snap = await rt.store.snapshot()
    m = snap.module(name) if MODULE_NAME.fullmatch(name) else None
    if m is None or not m.instances:
        raise NotFound(f"no module named {name[:40]!r} is docked", code="unknown-module")
    return module_view(m, snap.taken_at)


async def recent_events(rt: HubRuntime, limit: int = 50) -> HubEventPage:
    raw = await rt.store.recent_events(limit)
    return HubEventPage(items=[HubEventView.model_validate(e) for e in raw])
