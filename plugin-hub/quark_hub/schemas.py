"""Request, response and event payload models of the hub."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator

from quark_sdk.events import EventPayload, event_type
from quark_sdk.registry import MODULE_NAME, Manifest

Health = Literal["healthy", "degraded", "unhealthy"]
HEALTH_STATES: tuple[Health, ...] = ("healthy", "degraded", "unhealthy")
ROUTABLE: frozenset[str] = frozenset({"healthy", "degraded"})
UndockReason = Literal["deregistered", "lease_expired", "replaced"]

INSTANCE_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
SCOPE = re.compile(r"^[a-z][a-z0-9_\-.:]{0,63}$")
AUDIENCE = re.compile(r"^[a-z][a-z0-9_\-.:]{0,63}$")


def check_http_url(value: str) -> str:
    """An absolute http(s) URL with a host and nothing a prober or Traefik could misread; no trailing slash."""
    if len(value) > 512:
        raise ValueError("must be at most 512 characters")
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        raise ValueError("is not a valid URL") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an absolute http:// or https:// URL with a host")
    if parts.username or parts.password:
        raise ValueError("must not carry credentials")
    if parts.fragment or any(c.isspace() for c in value):
        raise ValueError("must not contain whitespace or a fragment")
    if port == 0:
        raise ValueError("has an invalid port")
    return value.rstrip("/") if parts.path in ("", "/") else value


# -- registry ---------------------------------------------------------------------------------------


class RegisterRequest(BaseModel):
    """What the SDK's RegistryClient sends (see quark_sdk.registry)."""

    model_config = ConfigDict(extra="forbid")

    manifest: Manifest
    instance_url: str
    health_url: str | None = None
    instance_id: str | None = None

    @field_validator("instance_url")
    @classmethod
    def _instance_url(cls, v: str) -> str:
        v = check_http_url(v)
        parts = urlsplit(v)
        if parts.query:
            raise ValueError("must not have a query string")
        if parts.path not in ("", "/"):
            raise ValueError("must be the instance's origin (scheme://host:port) without a path")
        return v

    @field_validator("health_url")
    @classmethod
    def _health_url(cls, v: str | None) -> str | None:
        return None if v is None else check_http_url(v)

    @field_validator("instance_id")
    @classmethod
    def _instance_id(cls, v: str | None) -> str | None:
        if v is not None and not INSTANCE_ID.fullmatch(v):
            raise ValueError("must be 1-64 letters, digits, '_' or '-'")
        return v


class RegisterResponse(BaseModel):
    instance_id: str
    module: str
    lease_ttl: float
    heartbeat_interval: float
    docked: bool = Field(description="true when this call docked the instance; false when it renewed a live one")


class HeartbeatResponse(BaseModel):
    instance_id: str
    lease_ttl: float
    health: Health
    action: Literal["serve", "drain"] = Field(
        default="serve", description="drain: the module was disabled or this version retired; stop consuming, "
                                     "deregister and register again later (docs/hub.md, Module lifecycle)")


class InstanceView(BaseModel):
    instance_id: str
    module: str
    version: str
    instance_url: str
    health_url: str
    health: Health
    health_since: datetime
    registered_at: datetime
    last_heartbeat: datetime
    lease_expires_at: datetime
    uptime_seconds: float
    last_probe_at: datetime | None = None
    latency_ms: float | None = None
    consecutive_failures: int = 0
    last_error: str | None = None


class ModuleView(BaseModel):
    name: str
    version: str
    type: str
    description: str
    health: Health
    api: list[str]
    publishes: list[str]
    consumes: list[str]
    requires: dict[str, bool]
    scopes: list[str]
    last_heartbeat: datetime | None
    instances: list[InstanceView]
    manifest: dict[str, Any]


class DiscoveryPage(BaseModel):
    items: list[ModuleView]
    next_cursor: str | None = None
    generated_at: datetime


class HubEventView(BaseModel):
    id: str
    type: str
    time: datetime
    module: str
    instance_id: str
    summary: str
    data: dict[str, Any]


class HubEventPage(BaseModel):
    items: list[HubEventView]


# -- identity ---------------------------------------------------------------------------------------


class ClientCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    client_id: str = Field(description="the module name the tokens will be issued for (their `sub`)")
    client_secret: str | None = Field(default=None, min_length=24, max_length=256,
                                      description="omit to have the hub generate one")
    scopes: list[str] | None = Field(default=None, max_length=64,
                                     description="fixed scopes; omit to use the scopes of the registered manifest")
    description: str = Field(default="", max_length=200)

    @field_validator("client_id")
    @classmethod
    def _client_id(cls, v: str) -> str:
        if not MODULE_NAME.fullmatch(v):
            raise ValueError("must be a module name: 2-32 lowercase letters, digits and '-', starting with a letter")
        return v

    @field_validator("scopes")
    @classmethod
    def _scopes(cls, v: list[str] | None) -> list[str] | None:
        if v is not None:
            for s in v:
                if not SCOPE.fullmatch(s):
                    raise ValueError(f"scope {s[:70]!r} is not a valid scope name")
        return v


class ClientView(BaseModel):
    client_id: str
    scopes: list[str] | None
    source: str
    description: str
    created_at: datetime
    updated_at: datetime
    last_used_at: datetime | None


class ClientCreated(ClientView):
    client_secret: str = Field(description="shown once; the hub keeps only a hash")


class ClientPage(BaseModel):
    items: list[ClientView]


class TokenResponse(BaseModel):
    access_token: str
    token_type: Literal["Bearer"] = "Bearer"  # noqa: S105 - the OAuth token type, not a secret
    expires_in: int
    scope: str


# -- events -----------------------------------------------------------------------------------------


@event_type("quark.hub.module.docked")
class ModuleDocked(EventPayload):
    """A module instance registered with the hub and is now part of the station."""

    module: str
    instance_id: str
    instance_url: str
    health_url: str
    version: str
    api: list[str] = Field(default_factory=list)
    publishes: list[str] = Field(default_factory=list)
    consumes: list[str] = Field(default_factory=list)


@event_type("quark.hub.module.undocked")
class ModuleUndocked(EventPayload):
    """A module instance left the station: it deregistered, its lease expired, or a new instance replaced it."""

    module: str
    instance_id: str
    instance_url: str
    reason: UndockReason
    last_health: Health | None = None


@event_type("quark.hub.module.health_changed")
class ModuleHealthChanged(EventPayload):
    """The hub's health monitor saw an instance change state (healthy, degraded, unhealthy)."""

    module: str
    instance_id: str
    instance_url: str
    previous: Health
    current: Health
    reason: str
    consecutive_failures: int = 0
    latency_ms: float | None = None
