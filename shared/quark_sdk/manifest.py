"""The manifest schema's versions, and the forms of `module-manifest.yaml` read into today's schema.

* version 2 (MANIFEST_VERSION, `manifest_version: 2`): version 1 plus `payloads` (the Pydantic model of each
  event's payload, whose JSON Schema the hub checks at docking) and an optional `port`.
* version 1 (no `manifest_version`): the original mapping form; read as is.
* the seeds' example form (no `manifest_version`, `type: docker`, list-form `requires` and `exposes`,
  events without the `quark.` prefix, API patterns like `/auth/*`, no `port`): mapped to version 2, with a
  warning for each value that is ignored or reinterpreted.

quark_sdk.registry.Manifest is the model; this module only reshapes the raw YAML data before it validates.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

MANIFEST_VERSION = 2

# requires.<key>: what each capability is backed by in Quark (another backend in a manifest is ignored).
BACKENDS: dict[str, tuple[str, ...]] = {
    "database": ("postgres", "postgresql"),
    "event_bus": ("nats", "jetstream", "nats-jetstream"),
    "cache": ("redis", "valkey"),
    "storage": ("minio", "s3"),
}
REQUIRES_ALIASES = {"db": "database", "bus": "event_bus", "events": "event_bus", "nats": "event_bus",
                    "redis": "cache", "objects": "storage", "object_storage": "storage"}
MODULE_TYPES = ("service", "plugin", "infrastructure")
# Deployment kinds of the seeds' form: every Quark module is a Python service, run as a container by the fleet
# and in-process by the embedded station, so the kind says nothing the station can use.
DEPLOYMENT_TYPES = ("docker", "container", "process", "python")


class ManifestError(ValueError):
    """A manifest that cannot be read; str() starts with the field it is about."""


def describe_errors(exc: ValidationError) -> str:
    """Every validation error as `field.path: message`, joined (the field is what a developer must fix)."""
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "manifest"
        msg = str(err["msg"]).removeprefix("Value error, ")
        parts.append(msg if msg.startswith(where + ":") or (not err["loc"] and ":" in msg.split(" ")[0])
                     else f"{where}: {msg}")
    return "; ".join(parts)


def normalize(data: Any) -> tuple[Any, list[str]]:
    """The raw manifest data in today's schema, and what was ignored or reinterpreted on the way."""
    if not isinstance(data, Mapping):
        return data, []  # the model's own error ("Input should be a valid dictionary")
    if "manifest_version" in data:
        version = data["manifest_version"]
        if isinstance(version, bool) or not isinstance(version, int):
            raise ManifestError(f"manifest_version: must be an integer (this SDK reads 1 to {MANIFEST_VERSION})")
        if version > MANIFEST_VERSION:
            raise ManifestError(f"manifest_version: {version} is newer than this SDK understands "
                                f"({MANIFEST_VERSION}); upgrade quark-sdk")
        return dict(data), []
    if not _is_seed_form(data):
        return {**data, "manifest_version": 1}, []
    return _from_seed_form(data)


def _is_seed_form(data: Mapping[str, Any]) -> bool:
    return (isinstance(data.get("requires"), list) or isinstance(data.get("exposes"), list)
            or data.get("type") in DEPLOYMENT_TYPES)


def _from_seed_form(data: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    warnings: list[str] = []
    out: dict[str, Any] = {k: v for k, v in data.items() if k not in ("requires", "exposes", "type", "consumes")}
    out["manifest_version"] = MANIFEST_VERSION
    kind = data.get("type")
    if kind in DEPLOYMENT_TYPES:
        warnings.append(f"type: {kind!r} ignored (a deployment kind): the module is a 'service', run as a "
                        "container by the fleet and in-process by the embedded station")
        out["type"] = "service"
    elif kind is not None:
        out["type"] = kind
    out["requires"] = _requires(data.get("requires"), warnings)
    api, events = _exposes(data.get("exposes"), warnings)
    out["exposes"] = {"api": api, "events": events}
    if "consumes" in data:
        consumes = data["consumes"]
        out["consumes"] = [_event(e, "consumes", warnings) for e in _as_list(consumes)] \
            if isinstance(consumes, (list, str)) else consumes
    if "port" not in data:
        warnings.append("port: none given; the fleet tools allocate a free one (quark create writes one into "
                        "new manifests)")
    return out, warnings


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _requires(raw: Any, warnings: list[str]) -> Any:
    if not isinstance(raw, list):
        return raw if raw is not None else {}
    flags: dict[str, bool] = {}
    for i, item in enumerate(raw):
        entries: list[tuple[Any, Any]]
        if isinstance(item, str):
            entries = [(item, True)]
        elif isinstance(item, Mapping):
            entries = list(item.items())
        else:
            raise ManifestError(f"requires.{i}: must be a name or a `name: backend` pair, got {item!r}")
        for key, backend in entries:
            name = REQUIRES_ALIASES.get(str(key), str(key))
            if name not in BACKENDS:
                warnings.append(f"requires.{i}: {key!r} ignored: Quark provides only "
                                f"{', '.join(BACKENDS)}")
                continue
            flags[name] = True
            if backend is not True and str(backend).lower() not in BACKENDS[name]:
                warnings.append(f"requires.{i}: {key}: {backend!r} ignored: Quark's {name} is "
                                f"{BACKENDS[name][0]}")
    return flags


def _exposes(raw: Any, warnings: list[str]) -> tuple[Any, Any]:
    if isinstance(raw, Mapping):
        return raw.get("api", []), [_event(e, "exposes.events", warnings) for e in _as_list(raw.get("events", []))]
    if raw is None:
        return [], []
    if not isinstance(raw, list):
        raise ManifestError(f"exposes: must be a mapping (api, events) or a list of `api:`/`events:` items, "
                            f"got {type(raw).__name__}")
    api: list[str] = []
    events: list[str] = []
    for i, item in enumerate(raw):
        if not isinstance(item, Mapping):
            raise ManifestError(f"exposes.{i}: must be an `api: <prefix>` or `events: <type>` item, got {item!r}")
        for key, value in item.items():
            if key == "api":
                api.extend(_prefix(str(p), f"exposes.{i}.api", warnings) for p in _as_list(value))
            elif key == "events":
                events.extend(_event(e, f"exposes.{i}.events", warnings) for e in _as_list(value))
            else:
                warnings.append(f"exposes.{i}: {key!r} ignored: a module exposes only api prefixes and events")
    return api, events


def _prefix(pattern: str, where: str, warnings: list[str]) -> str:
    """`/auth/*` (a glob) → the route prefix `/auth` the gateway routes."""
    prefix = re.sub(r"/?\*+$", "", pattern).rstrip("/") or "/"
    if prefix != pattern:
        warnings.append(f"{where}: {pattern!r} read as the route prefix {prefix!r}")
    return prefix


def _event(name: Any, where: str, warnings: list[str]) -> Any:
    """`user.created` → `quark.user.created` (event types live under `quark.`)."""
    if isinstance(name, str) and not name.startswith("quark.") and re.fullmatch(r"[a-z0-9_]+(\.[a-z0-9_*>]+)+",
                                                                                name):
        warnings.append(f"{where}: {name!r} read as the event type 'quark.{name}'")
        return f"quark.{name}"
    return name
