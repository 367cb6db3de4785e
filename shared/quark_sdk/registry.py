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
from pathlib import Path
from typing import Any, Literal

import httpx
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

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


class Manifest(BaseModel):
    """`module-manifest.yaml`: what a module is, needs, exposes and consumes."""

    model_config = ConfigDict(extra="forbid")

    name: str
    version: str = Field(pattern=r"^\d+\.\d+\.\d+([-+][0-9A-Za-z.\-]+)?$")
    type: Literal["service", "plugin", "infrastructure"] = "service"
    description: str = Field(default="", max_length=500)
    requires: ManifestRequires = Field(default_factory=ManifestRequires)
    exposes: ManifestExposes = Field(default_factory=ManifestExposes)
    consumes: list[str] = Field(default_factory=list, max_length=128)
    scopes: list[str] = Field(default_factory=list, max_length=64)
    health_check: str = Field(default="/health/ready", pattern=r"^/[A-Za-z0-9_\-./]*$")
    port: int = Field(ge=1, le=65535)

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

    @field_validator("scopes")
    @classmethod
    def _scopes(cls, v: list[str]) -> list[str]:
        for s in v:
            if not re.fullmatch(r"[a-z][a-z0-9_\-.:]{0,63}", s):
                raise ValueError(f"scope {s!r} is not a valid scope name")
        return v

    @classmethod
    def load(cls, path: Path) -> Manifest:
        try:
            data = yaml.safe_load(path.read_text())
        except (OSError, yaml.YAMLError) as exc:
            raise ValueError(f"cannot read manifest {path}: {exc}") from exc
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise ValueError(f"invalid manifest {path}: {where}: {first['msg']}") from None


class RegistryClient:
    """Registers one instance, renews its lease, re-registers if the lease was lost, deregisters on stop."""

    def __init__(self, hub_url: str, manifest: Manifest, *, instance_url: str, health_url: str,
                 heartbeat_interval: float = 5.0, token: str | None = None,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.hub_url = hub_url.rstrip("/")
        self.manifest = manifest
        self.instance_url = instance_url
        self.health_url = health_url
        self.heartbeat_interval = heartbeat_interval
        self.instance_id: str | None = None
        self.docked = asyncio.Event()
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
        """Renew the lease; False when the hub no longer knows us (then we re-register)."""
        assert self.instance_id is not None
        resp = await self._http.put(
            f"/api/v1/hub/modules/{self.manifest.name}/instances/{self.instance_id}/heartbeat")
        if resp.status_code == 404:
            return False
        resp.raise_for_status()
        return True

    async def _run(self) -> None:
        delay = 0.2
        failures = 0
        while True:
            try:
                if not self.docked.is_set():
                    await self.register()
                    delay = 0.2
                    failures = 0
                elif not await self.heartbeat():
                    log.warning("hub lost the lease of %s/%s; re-registering", self.manifest.name, self.instance_id)
                    self.docked.clear()
                    continue
                await asyncio.sleep(self.heartbeat_interval)
            except asyncio.CancelledError:
                raise
            except RegistrationRejected as exc:
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
