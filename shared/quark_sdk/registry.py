"""Docking: the module manifest, and the client that keeps an instance registered with the hub.

The contract with the Plugin Hub (HTTP, JSON):
  POST   /api/v1/hub/modules/register                      {manifest, instance_url, health_url, instance_id?}
         -> 201 {instance_id, lease_ttl, heartbeat_interval}
  PUT    /api/v1/hub/modules/{name}/instances/{id}/heartbeat -> 200 {lease_ttl} | 404 (lease lost: re-register)
  DELETE /api/v1/hub/modules/{name}/instances/{id}          -> 204
A module keeps serving when the hub is away; it re-docks when the hub returns.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Literal

import httpx
import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator, model_validator

from quark_sdk.manifest import MANIFEST_VERSION, ManifestError, describe_errors, normalize
from quark_sdk.replay import parse_replay
from quark_sdk.tasks import cancel_and_wait

log = logging.getLogger("quark.registry")

MODULE_NAME = re.compile(r"^[a-z][a-z0-9-]{1,31}$")
EVENT_NAME = re.compile(r"^quark\.[a-z0-9_]+(\.[a-z0-9_*>]+)+$")


class ManifestRequires(BaseModel):
    model_config = ConfigDict(extra="forbid")
    database: bool = False
    event_bus: bool = False
    cache: bool = False
    storage: bool = False


class ManifestExposes(BaseModel):
    model_config = ConfigDict(extra="forbid")
    api: list[str] = Field(default_factory=list, max_length=32)
    events: list[str] = Field(default_factory=list, max_length=128)

    @field_validator("api")
    @classmethod
    def _prefixes(cls, v: list[str]) -> list[str]:
        for p in v:
            if p == "/":  # the catch-all (the web client): routed below every other prefix, by hub and gateway
                continue
            if not re.fullmatch(r"/[A-Za-z0-9_\-./]{1,127}", p) or p.endswith("/") or ".." in p:
                raise ValueError(f"route prefix {p!r} must start with / and contain only URL path characters")
        return v

    @field_validator("events")
    @classmethod
    def _events(cls, v: list[str]) -> list[str]:
        for e in v:
            if not EVENT_NAME.fullmatch(e):
                raise ValueError(f"event type {e!r} must look like quark.<domain>.<event>")
        return v


class EventContracts(BaseModel):
    """JSON Schemas of the payloads a module publishes and consumes (quark_sdk.contracts): computed from its
    Pydantic models when it docks, compared by the hub with the other side's (quark_hub.contracts)."""

    model_config = ConfigDict(extra="forbid")
    publishes: dict[str, dict[str, Any]] = Field(default_factory=dict, max_length=128)
    consumes: dict[str, dict[str, Any]] = Field(default_factory=dict, max_length=128)


class Manifest(BaseModel):
    """`module-manifest.yaml`: what a module is, needs, exposes and consumes (schema: quark_sdk.manifest)."""

    model_config = ConfigDict(extra="forbid")

    # The schema's version (quark_sdk.manifest.MANIFEST_VERSION); a manifest without it is read as version 1.
    manifest_version: int = Field(default=MANIFEST_VERSION, ge=1, le=MANIFEST_VERSION)
    name: str
    version: str = Field(pattern=r"^\d+\.\d+\.\d+([-+][0-9A-Za-z.\-]+)?$")
    type: Literal["service", "plugin", "infrastructure"] = "service"
    description: str = Field(default="", max_length=500)
    requires: ManifestRequires = Field(default_factory=ManifestRequires)
    exposes: ManifestExposes = Field(default_factory=ManifestExposes)
    consumes: list[str] = Field(default_factory=list, max_length=128)
    scopes: list[str] = Field(default_factory=list, max_length=64)
    health_check: str = Field(default="/health/ready", pattern=r"^/[A-Za-z0-9_\-./]*$")
    # What a new durable consumer gets at first docking: none | all | since <ISO time> (quark_sdk.replay).
    replay: str = "none"
    # The fleet port (compose, Kubernetes, `quark dev --fleet`); `quark create` allocates a free one. A manifest
    # without one (the seeds' form) gets a free port wherever it runs.
    port: int | None = Field(default=None, ge=1, le=65535)
    # Event type -> the Pydantic model of its payload (`package.module:Class`): the consumer's own reading of a
    # consumed event, or a published event's model when it is not the @event_type one. Version 2.
    payloads: dict[str, str] = Field(default_factory=dict, max_length=256)
    # Filled in by the SDK when the module docks (never written in the YAML file): see EventContracts.
    contracts: EventContracts | None = None

    _warnings: list[str] = PrivateAttr(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _normalize(cls, data: Any) -> Any:
        """Older and foreign forms (the seeds' list form, version 1) mapped to this schema. What cannot be mapped
        is left as it is, so the field validators below name the field (load() says more, from normalize)."""
        try:
            return normalize(data)[0]
        except ManifestError:
            return data

    @model_validator(mode="after")
    def _payloads_name_declared_events(self) -> Manifest:
        declared = set(self.exposes.events) | set(self.consumes)
        for type_name, ref in self.payloads.items():
            if type_name not in declared:
                raise ValueError(f"payloads.{type_name}: not an event this module publishes (exposes.events) "
                                 "or consumes (consumes)")
            if not re.fullmatch(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*", ref):
                raise ValueError(f"payloads.{type_name}: {ref!r} must be an import path like package.module:Class")
        return self

    @property
    def warnings(self) -> list[str]:
        """What reading the file ignored or reinterpreted (the seeds' form); logged by load()."""
        return list(self._warnings)

    def with_contracts(self) -> Manifest:
        """A copy carrying the JSON Schemas of its events' payloads (what the hub checks at docking)."""
        from quark_sdk.contracts import manifest_contracts

        return self.model_copy(update={"contracts": EventContracts(**manifest_contracts(self))})

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not MODULE_NAME.fullmatch(v):
            raise ValueError("must be 2-32 chars of lowercase letters, digits and '-', starting with a letter")
        return v

    @field_validator("consumes")
    @classmethod
    def _consumes(cls, v: list[str]) -> list[str]:
        for e in v:
            if not EVENT_NAME.fullmatch(e):
                raise ValueError(f"event type {e!r} must look like quark.<domain>.<event>")
        return v

    @field_validator("replay")
    @classmethod
    def _replay(cls, v: str) -> str:
        return str(parse_replay(v))

    @field_validator("scopes")
    @classmethod
    def _scopes(cls, v: list[str]) -> list[str]:
        for s in v:
            if not re.fullmatch(r"[a-z][a-z0-9_\-.:]{0,63}", s):
                raise ValueError(f"scope {s!r} is not a valid scope name")
        return v

    @classmethod
    def load(cls, path: Path) -> Manifest:
        """Read and validate a manifest file; errors name every bad field, warnings are logged once."""
        try:
            data = yaml.safe_load(path.read_text())
        except (OSError, yaml.YAMLError) as exc:
            raise ValueError(f"cannot read manifest {path}: {exc}") from exc
        try:
            normalized, warnings = normalize(data)
            manifest = cls.model_validate(normalized)
        except ValidationError as exc:
            raise ValueError(f"invalid manifest {path}: {describe_errors(exc)}") from None
        except ManifestError as exc:
            raise ValueError(f"invalid manifest {path}: {exc}") from None
        manifest._warnings = warnings
        for warning in warnings:
            if (str(path), warning) not in _WARNED:
                _WARNED.add((str(path), warning))
                log.warning("manifest %s: %s", path, warning)
        return manifest


_WARNED: set[tuple[str, str]] = set()


class RegistryClient:
    """Registers one instance, renews its lease, re-registers if the lease was lost, deregisters on stop."""

    def __init__(self, hub_url: str, manifest: Manifest, *, instance_url: str, health_url: str,
                 heartbeat_interval: float = 5.0, token: str | None = None,
                 transport: httpx.AsyncBaseTransport | None = None,
                 on_drain: Callable[[], Awaitable[None]] | None = None,
                 on_resume: Callable[[], Awaitable[None]] | None = None) -> None:
        self.hub_url = hub_url.rstrip("/")
        self.manifest = manifest
        self.instance_url = instance_url
        self.health_url = health_url
        self.heartbeat_interval = heartbeat_interval
        self.instance_id: str | None = None
        self.docked = asyncio.Event()
        # Parked: the hub disabled the module (or retired this version): consumers stopped, not registered,
        # asking again every heartbeat interval until it is admitted (docs/hub.md, "Module lifecycle").
        self.parked = False
        self._on_drain = on_drain
        self._on_resume = on_resume
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.AsyncClient(base_url=self.hub_url, timeout=5.0, headers=headers, transport=transport)
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"registry-{self.manifest.name}")

    async def stop(self) -> None:
        if self._task is not None:
            await cancel_and_wait(self._task)
            self._task = None
        if self.instance_id is not None:
            try:
                await self._http.delete(f"/api/v1/hub/modules/{self.manifest.name}/instances/{self.instance_id}",
                                        timeout=2.0)
            except httpx.HTTPError as exc:
                log.info("could not deregister from hub (%r); its lease will expire", exc)
            self.docked.clear()
        await self._http.aclose()

    async def register(self) -> str:
        body: dict[str, Any] = {
            "manifest": self.manifest.model_dump(mode="json"),
            "instance_url": self.instance_url,
            "health_url": self.health_url,
        }
        if self.instance_id:
            body["instance_id"] = self.instance_id
        resp = await self._http.post("/api/v1/hub/modules/register", json=body)
        if resp.status_code >= 400:
            raise RegistrationRejected(f"hub refused registration ({resp.status_code}): {resp.text[:300]}",
                                       status=resp.status_code)
        data = resp.json()
        self.instance_id = str(data["instance_id"])
        if data.get("heartbeat_interval"):
            self.heartbeat_interval = float(data["heartbeat_interval"])
        self.docked.set()
        log.info("docked %s as instance %s at %s", self.manifest.name, self.instance_id, self.hub_url)
        return self.instance_id

    async def heartbeat(self) -> bool:
        """Renew the lease; False when the hub no longer knows us (then we re-register), or tells us to drain
        (then we have drained and deregistered)."""
        assert self.instance_id is not None
        resp = await self._http.put(
            f"/api/v1/hub/modules/{self.manifest.name}/instances/{self.instance_id}/heartbeat")
        if resp.status_code == 404:
            return False
        resp.raise_for_status()
        if resp.json().get("action") == "drain":
            await self.drain("the hub asked this instance to drain")
            return False
        return True

    async def drain(self, why: str) -> None:
        """Stop consuming, then deregister: the gateways already stopped routing here, requests in flight finish."""
        if not self.parked:
            log.warning("%s: %s; stopping consumers and deregistering", self.manifest.name, why)
            self.parked = True
            if self._on_drain is not None:
                await self._on_drain()
        if self.instance_id is not None:
            try:
                await self._http.delete(f"/api/v1/hub/modules/{self.manifest.name}/instances/{self.instance_id}")
            except httpx.HTTPError as exc:
                log.info("could not deregister while draining (%r); the lease will expire", exc)
            self.instance_id = None
        self.docked.clear()

    async def _resume(self) -> None:
        if self.parked:
            self.parked = False
            log.warning("%s: admitted by the hub again; consumers resume", self.manifest.name)
            if self._on_resume is not None:
                await self._on_resume()

    async def _run(self) -> None:
        delay = 0.2
        failures = 0
        while True:
            try:
                if not self.docked.is_set():
                    await self.register()
                    await self._resume()
                    delay = 0.2
                    failures = 0
                elif not await self.heartbeat():
                    if self.parked:  # drained on the hub's word: ask to dock again a heartbeat later
                        await asyncio.sleep(self.heartbeat_interval)
                        continue
                    log.warning("hub lost the lease of %s/%s; re-registering", self.manifest.name, self.instance_id)
                    self.docked.clear()
                    continue
                await asyncio.sleep(self.heartbeat_interval)
            except asyncio.CancelledError:
                raise
            except RegistrationRejected as exc:
                if exc.status == 423:  # disabled, removed or retired: stay drained, ask again later
                    await self.drain(f"not admitted ({exc})")
                    await asyncio.sleep(self.heartbeat_interval)
                    continue
                if exc.status < 500:
                    log.error("%s", exc)
                    await asyncio.sleep(max(self.heartbeat_interval, 5.0))
                    continue
                # The hub is up but its own database or Redis is not (a restart): an outage, said once.
                failures += 1
                log.log(logging.WARNING if failures == 1 else logging.DEBUG, "%s; retrying", exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.heartbeat_interval)
            except (httpx.HTTPError, ValueError, KeyError) as exc:
                failures += 1
                # The hub starting at the same time (embedded mode, compose) is normal: say so only if it lasts.
                log.log(logging.WARNING if failures > 5 else logging.DEBUG,
                        "hub at %s unreachable (%r); retrying in %.1fs", self.hub_url, exc, delay)
                self.docked.clear()
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.heartbeat_interval)


class RegistrationRejected(Exception):
    """The hub answered an error to our registration: 4xx (bad manifest, bad token) or 5xx (its own outage)."""

    def __init__(self, message: str, *, status: int = 400) -> None:
        super().__init__(message)
        self.status = status
