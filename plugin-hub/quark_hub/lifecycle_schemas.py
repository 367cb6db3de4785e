"""Request, response and event models of the module lifecycle (install, enable, disable, traffic, upgrade, remove)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from quark_hub.schemas import Health
from quark_sdk.events import EventPayload, event_type

LifecycleState = Literal["enabled", "disabled", "removed"]
# What a heartbeat tells an instance: keep serving, or drain (stop consuming, deregister, wait to be enabled).
InstanceAction = Literal["serve", "drain"]
VERSION = re.compile(r"^\d+\.\d+\.\d+([-+][0-9A-Za-z.\-]+)?$")


def check_version(v: str) -> str:
    if not VERSION.fullmatch(v):
        raise ValueError("must be a semantic version (1.2.3)")
    return v


class LifecycleInstance(BaseModel):
    instance_id: str
    version: str
    instance_url: str
    health: Health
    routed: bool = Field(description="true when the gateways send it traffic (enabled, not retired, routable)")


class LifecycleView(BaseModel):
    name: str
    state: LifecycleState
    weights: dict[str, int] = Field(default_factory=dict,
                                    description="version -> weight; empty: every routable instance equally")
    retired: list[str] = Field(default_factory=list, description="versions drained by an upgrade")
    installed: dict[str, str] | None = None
    updated_at: datetime | None = None
    updated_by: str | None = None
    instances: list[LifecycleInstance] = Field(default_factory=list)


class TrafficRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    weights: dict[str, int] = Field(min_length=1, max_length=16)

    @field_validator("weights")
    @classmethod
    def _weights(cls, v: dict[str, int]) -> dict[str, int]:
        for version, weight in v.items():
            check_version(version)
            if not 0 <= weight <= 100:
                raise ValueError(f"weight of {version} must be between 0 and 100")
        if not any(v.values()):
            raise ValueError("at least one version needs a weight above 0")
        return v


class UpgradeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    to_version: str

    _v = field_validator("to_version")(classmethod(lambda cls, v: check_version(v)))


class InstalledRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    version: str
    source: str = Field(default="", max_length=500)

    _v = field_validator("version")(classmethod(lambda cls, v: check_version(v)))


# -- events (audit trail: every one names the actor) --------------------------------------------------


class LifecycleEvent(EventPayload):
    module: str
    actor_id: str


@event_type("quark.hub.module.installed")
class ModuleInstalled(LifecycleEvent):
    """A module package was installed on the station (its database provisioned and migrated)."""

    version: str
    source: str = ""


@event_type("quark.hub.module.enabled")
class ModuleEnabled(LifecycleEvent):
    """An admin enabled a module: its instances dock again and get routes."""


@event_type("quark.hub.module.disabled")
class ModuleDisabled(LifecycleEvent):
    """An admin disabled a module: its routes are gone, its instances drain and deregister."""


@event_type("quark.hub.module.traffic_shifted")
class ModuleTrafficShifted(LifecycleEvent):
    """The weighted split of a module's traffic between its versions changed."""

    weights: dict[str, int]


@event_type("quark.hub.module.upgraded")
class ModuleUpgraded(LifecycleEvent):
    """All of a module's traffic goes to `to_version`; the other versions were retired (drained)."""

    from_versions: list[str]
    to_version: str


@event_type("quark.hub.module.removed")
class ModuleRemoved(LifecycleEvent):
    """An admin removed a module from the station (with purge_data: its data is to be deleted too)."""

    purge_data: bool = False


def lifecycle_summary(data: Mapping[str, Any], type_name: str) -> str | None:
    """The dashboard's line for a lifecycle event (None: not one of them)."""
    kind = type_name.rsplit(".", 1)[-1]
    who = f"{data.get('module')} · by {str(data.get('actor_id', ''))[:24]}"
    lines = {
        "installed": f"{who}: installed v{data.get('version')}",
        "enabled": f"{who}: enabled",
        "disabled": f"{who}: disabled (draining)",
        "traffic_shifted": f"{who}: traffic {data.get('weights')}",
        "upgraded": f"{who}: upgraded {', '.join(data.get('from_versions') or [])} → {data.get('to_version')}",
        "removed": f"{who}: removed" + (" (data purged)" if data.get("purge_data") else ""),
    }
    return lines.get(kind)

