"""The registry's data in Redis: modules, instances with leases, known manifests, recent hub events.

Every key goes through the caller's `key(...)` (the SDK's `ctx.key`), so two stations or two tests
sharing a Redis never see each other. Layout (under the hub's prefix):

  modules                 SET     names of modules with at least one registered instance
  module:<name>           STRING  JSON {manifest, updated_at} of the module's latest registration
  instances:<name>        HASH    instance id -> instance URL (an index that outlives a lapsed lease,
                                  so the monitor can announce the expiry with the instance's address)
  instance:<name>:<id>    HASH    one instance; the key's TTL *is* the lease
  manifests               HASH    name -> JSON manifest, kept after instances leave (identity needs scopes)
  owners                  HASH    name -> the service-client identity a module name is bound to, for good
  events                  LIST    recent hub events, newest first, capped
  changes                 channel a message on every change (dashboards re-render)
  lock:<name>             STRING  a lease-style lock (monitor leadership, first-start key generation)

Writes that must not resurrect an expired lease (heartbeat, health updates) are Lua scripts that act
only while the instance key exists.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, fields
from typing import Any, cast

import redis.asyncio as aioredis

from quark_hub.schemas import ROUTABLE, Health
from quark_sdk.registry import Manifest

_RENEW = """
if redis.call('EXISTS', KEYS[1]) == 0 then return nil end
redis.call('HSET', KEYS[1], 'last_heartbeat', ARGV[1], 'lease_ttl', ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return redis.call('HGETALL', KEYS[1])
"""

_CLEANUP = """
if redis.call('HLEN', KEYS[2]) == 0 then
  redis.call('SREM', KEYS[3], ARGV[2])
  redis.call('DEL', KEYS[4])
end
"""

_REMOVE = """
local fields = redis.call('HGETALL', KEYS[1])
redis.call('DEL', KEYS[1])
redis.call('HDEL', KEYS[2], ARGV[1])
""" + _CLEANUP + """
if #fields == 0 then return nil end
return fields
"""

_FORGET_EXPIRED = """
if redis.call('EXISTS', KEYS[1]) == 1 then return nil end
local url = redis.call('HGET', KEYS[2], ARGV[1])
if not url then return nil end
redis.call('HDEL', KEYS[2], ARGV[1])
""" + _CLEANUP + """
return url
"""

# Acquire or renew a lock held by this token; 1 while we hold it.
_HOLD_LOCK = """
local cur = redis.call('GET', KEYS[1])
if not cur then redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) return 1 end
if cur == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[2]) return 1 end
return 0
"""

_RELEASE_LOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

# Compare-and-set on the health field: during a monitor hand-over two hubs may probe the same
# instance once; only one of them records (and announces) each transition.
_UPDATE_HEALTH = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if redis.call('HGET', KEYS[1], 'health') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
return 1
"""


@dataclass
class InstanceRecord:
    """One registered instance as stored in its hash (timestamps are epoch seconds)."""

    instance_id: str
    module: str
    version: str
    instance_url: str
    health_url: str
    registered_at: float
    last_heartbeat: float
    lease_ttl: float
    health: Health = "healthy"
    health_since: float = 0.0
    failures: int = 0
    last_probe_at: float | None = None
    latency_ms: float | None = None
    last_error: str | None = None
    remote_addr: str = ""
    # Who registered it (see service.registration_identity): a module's live instances share one identity.
    identity: str = ""

    @property
    def routable(self) -> bool:
        return self.health in ROUTABLE

    @property
    def lease_expires_at(self) -> float:
        return self.last_heartbeat + self.lease_ttl

    def to_fields(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value is not None:
                out[f.name] = repr(value) if isinstance(value, float) else str(value)
        return out

    @classmethod
    def from_fields(cls, raw: dict[Any, Any]) -> InstanceRecord:
        data = {_text(k): _text(v) for k, v in raw.items()}

        def num(name: str) -> float | None:
            value = data.get(name)
            return float(value) if value not in (None, "") else None

        return cls(
            instance_id=data["instance_id"],
            module=data["module"],
            version=data.get("version", ""),
            instance_url=data["instance_url"],
            health_url=data["health_url"],
            registered_at=float(data["registered_at"]),
            last_heartbeat=float(data["last_heartbeat"]),
            lease_ttl=float(data["lease_ttl"]),
            health=cast(Health, data.get("health", "healthy")),
            health_since=float(data.get("health_since") or data["registered_at"]),
            failures=int(data.get("failures") or 0),
            last_probe_at=num("last_probe_at"),
            latency_ms=num("latency_ms"),
            last_error=data.get("last_error") or None,
            remote_addr=data.get("remote_addr", ""),
            identity=data.get("identity", ""),
        )


@dataclass
class ModuleRecord:
    """A module with the manifest of its latest registration and its live instances."""

    name: str
    manifest: Manifest
    updated_at: float
    instances: list[InstanceRecord] = field(default_factory=list)

    @property
    def health(self) -> Health:
        """healthy: every instance healthy; unhealthy: none can take traffic; degraded: in between."""
        states = {i.health for i in self.instances}
        if not states or states == {"unhealthy"}:
            return "unhealthy"
        if states == {"healthy"}:
            return "healthy"
        return "degraded"

    @property
    def last_heartbeat(self) -> float | None:
        return max((i.last_heartbeat for i in self.instances), default=None)


@dataclass
class Snapshot:
    """The whole registry at one moment, plus ids still indexed whose lease has already expired."""

    modules: list[ModuleRecord]
    expired: list[tuple[str, str]]
    taken_at: float

    def module(self, name: str) -> ModuleRecord | None:
        return next((m for m in self.modules if m.name == name), None)

    def instances(self) -> Iterable[InstanceRecord]:
        for m in self.modules:
            yield from m.instances


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _pairs(flat: Sequence[Any]) -> dict[str, str]:
    return {_text(flat[i]): _text(flat[i + 1]) for i in range(0, len(flat), 2)}


class RegistryStore:
    """All registry reads and writes; the rest of the hub never builds a Redis key itself."""

    def __init__(self, redis: aioredis.Redis, key: Callable[..., str]) -> None:
        self.redis = redis
        self._key = key
        self._renew = redis.register_script(_RENEW)
        self._remove = redis.register_script(_REMOVE)
        self._forget = redis.register_script(_FORGET_EXPIRED)
        self._update_health = redis.register_script(_UPDATE_HEALTH)
        self._hold_lock = redis.register_script(_HOLD_LOCK)
        self._release_lock = redis.register_script(_RELEASE_LOCK)
        # Parsed manifests by their stored document: a snapshot (every 0.5-1 s for the gateways' routing
        # tables) validated every module's manifest again, ~1.5% of the embedded station's CPU under load.
        self._manifests: dict[bytes | str, tuple[Manifest, float]] = {}

    # -- keys
    def key(self, *parts: str) -> str:
        return self._key(*parts)

    def _instance_keys(self, name: str, instance_id: str) -> list[str]:
        return [self.key("instance", name, instance_id), self.key("instances", name), self.key("modules"),
                self.key("module", name)]

    @property
    def channel(self) -> str:
        return self.key("changes")

    # -- reads
    async def snapshot(self) -> Snapshot:
        now = time.time()
        names = sorted(_text(n) for n in await self.redis.smembers(self.key("modules")))
        if not names:
            return Snapshot([], [], now)
        pipe = self.redis.pipeline(transaction=False)
        for name in names:
            pipe.get(self.key("module", name))
            pipe.hkeys(self.key("instances", name))
        raw = await pipe.execute()
        wanted: list[tuple[str, str]] = []
        module_docs: dict[str, tuple[Manifest, float]] = {}
        for i, name in enumerate(names):
            doc, ids = raw[2 * i], raw[2 * i + 1]
            if doc is not None:
                module_docs[name] = self._parsed(doc)
            wanted.extend((name, _text(x)) for x in sorted(ids))
        pipe = self.redis.pipeline(transaction=False)
        for name, iid in wanted:
            pipe.hgetall(self.key("instance", name, iid))
        hashes = await pipe.execute() if wanted else []
        by_module: dict[str, list[InstanceRecord]] = {n: [] for n in names}
        expired: list[tuple[str, str]] = []
        for (name, iid), h in zip(wanted, hashes, strict=True):
            if h:
                by_module[name].append(InstanceRecord.from_fields(h))
            else:
                expired.append((name, iid))
        modules = [
            ModuleRecord(name, *module_docs[name],
                         sorted(by_module[name], key=lambda r: (r.registered_at, r.instance_id)))
            for name in names if name in module_docs
        ]
        return Snapshot(modules, expired, now)

    def _parsed(self, doc: bytes | str) -> tuple[Manifest, float]:
        """A module document's manifest and update time, validated once per distinct document. The cache
        holds what the store holds (one entry per module and version), so it is cleared when it outgrows that."""
        found = self._manifests.get(doc)
        if found is None:
            data = json.loads(doc)
            found = (Manifest.model_validate(data["manifest"]), float(data["updated_at"]))
            if len(self._manifests) >= 1024:
                self._manifests.clear()
            self._manifests[doc] = found
        return found

    async def get_instance(self, name: str, instance_id: str) -> InstanceRecord | None:
        raw = await self.redis.hgetall(self.key("instance", name, instance_id))
        return InstanceRecord.from_fields(raw) if raw else None

    async def is_indexed(self, name: str, instance_id: str) -> bool:
        return bool(await self.redis.hexists(self.key("instances", name), instance_id))

    async def known_manifest(self, name: str) -> Manifest | None:
        raw = await self.redis.hget(self.key("manifests"), name)
        return Manifest.model_validate_json(raw) if raw else None

    async def known_module_names(self) -> set[str]:
        return {_text(n) for n in await self.redis.hkeys(self.key("manifests"))}

    async def owner(self, name: str) -> str | None:
        raw = await self.redis.hget(self.key("owners"), name)
        return None if raw is None else _text(raw)

    async def bind_owner(self, name: str, identity: str) -> None:
        await self.redis.hsetnx(self.key("owners"), name, identity)

    async def release_owner(self, name: str) -> bool:
        return bool(await self.redis.hdel(self.key("owners"), name))

    async def recent_events(self, limit: int) -> list[dict[str, Any]]:
        raw = await self.redis.lrange(self.key("events"), 0, max(0, limit - 1))
        return [json.loads(x) for x in raw]

    # -- writes
    async def put_instance(self, manifest: Manifest, record: InstanceRecord) -> None:
        """Create or overwrite an instance with a fresh lease, and record its module's manifest."""
        name, now = manifest.name, time.time()
        manifest_json = manifest.model_dump_json()
        pipe = self.redis.pipeline(transaction=True)
        ikey = self.key("instance", name, record.instance_id)
        pipe.delete(ikey)
        pipe.hset(ikey, mapping=record.to_fields())  # type: ignore[arg-type]
        pipe.pexpire(ikey, max(1, int(record.lease_ttl * 1000)))
        pipe.hset(self.key("instances", name), record.instance_id, record.instance_url)
        pipe.sadd(self.key("modules"), name)
        pipe.set(self.key("module", name), json.dumps({"manifest": json.loads(manifest_json), "updated_at": now}))
        pipe.hset(self.key("manifests"), name, manifest_json)
        await pipe.execute()

    async def renew(self, name: str, instance_id: str, *, now: float, lease_ttl: float) -> InstanceRecord | None:
        """Extend a live lease; None when the instance is unknown or its lease already ran out."""
        raw = await self._renew(keys=[self.key("instance", name, instance_id)],
                                args=[repr(now), max(1, int(lease_ttl * 1000)), repr(lease_ttl)])
        return InstanceRecord.from_fields(_pairs(raw)) if raw else None

    async def remove(self, name: str, instance_id: str) -> InstanceRecord | None:
        """Delete a live instance; returns what it was, or None if it was not live."""
        raw = await self._remove(keys=self._instance_keys(name, instance_id), args=[instance_id, name])
        return InstanceRecord.from_fields(_pairs(raw)) if raw else None

    async def forget_expired(self, name: str, instance_id: str) -> str | None:
        """Drop an index entry whose lease ran out; its URL if this call removed it (so it is announced once)."""
        url = await self._forget(keys=self._instance_keys(name, instance_id), args=[instance_id, name])
        return None if url is None else _text(url)

    async def update_health(self, record: InstanceRecord, expected: Health) -> bool:
        """Write the monitor's view of an instance if it is still live and still in state `expected`."""
        values = {k: v for k, v in record.to_fields().items()
                  if k in ("health", "health_since", "failures", "last_probe_at", "latency_ms", "last_error")}
        if record.last_error is None:
            values["last_error"] = ""
        args: list[str] = [expected]
        for k, v in values.items():
            args += [k, v]
        return bool(await self._update_health(keys=[self.key("instance", record.module, record.instance_id)],
                                              args=args))

    async def push_events(self, items: Sequence[dict[str, Any]], *, keep: int) -> None:
        if not items:
            return
        pipe = self.redis.pipeline(transaction=True)
        pipe.lpush(self.key("events"), *(json.dumps(i, default=str) for i in items))
        pipe.ltrim(self.key("events"), 0, keep - 1)
        await pipe.execute()

    async def notify(self, what: str) -> None:
        await self.redis.publish(self.channel, what)

    # -- locks
    async def hold_lock(self, name: str, token: str, ttl: float) -> bool:
        """Take the lock, or extend it if `token` already holds it; False while someone else does."""
        return bool(await self._hold_lock(keys=[self.key("lock", name)], args=[token, max(1, int(ttl * 1000))]))

    async def release_lock(self, name: str, token: str) -> None:
        await self._release_lock(keys=[self.key("lock", name)], args=[token])

