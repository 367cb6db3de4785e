"""Event contracts: the JSON Schemas of the payloads a module publishes and consumes, and whether what a
publisher sends satisfies what a consumer reads.

A module's contracts come from its Pydantic models: a published event's schema is its `@event_type` payload
(serialization mode: what `model_dump` writes), a consumed event's schema is the consumer's own reading of it
(validation mode: what `event.payload(Model)` accepts), named in the manifest's `payloads` map. The hub compares
them at docking (quark_hub.contracts): a consumer that requires a field the publisher does not send, or expects
another type, would dead-letter every event it receives, so it is refused before it docks.

The check is deliberately about the shapes Pydantic generates (objects, arrays, scalars, `anyOf` unions,
`$ref`s to `$defs`, enums and consts); it reports what it can prove incompatible and accepts what it cannot judge.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from quark_sdk.events import EVENT_CATALOGUE

if TYPE_CHECKING:
    from quark_sdk.registry import Manifest

Schema = Mapping[str, Any]
ANY = "any"


@dataclass(frozen=True)
class Incompatibility:
    """One way a consumer's schema rejects what a publisher sends: `field` is a dotted path in `data`."""

    field: str
    problem: str

    def __str__(self) -> str:
        return f"{self.field}: {self.problem}"


# --------------------------------------------------------------------------- schemas from models


def publisher_schema(model: type[BaseModel]) -> dict[str, Any]:
    """What a publisher writes: the model in serialization mode (fields with defaults are still written)."""
    return model.model_json_schema(mode="serialization")


def consumer_schema(model: type[BaseModel]) -> dict[str, Any]:
    """What a consumer accepts: the model in validation mode (fields without a default are required)."""
    return model.model_json_schema(mode="validation")


def import_model(ref: str) -> type[BaseModel]:
    """`package.module:Class` → the Pydantic model (ValueError naming the reference when it is not one)."""
    path, sep, attr = ref.partition(":")
    if not sep or not path or not attr:
        raise ValueError(f"payload model {ref!r} must be an import path like package.module:Class")
    try:
        obj = getattr(importlib.import_module(path), attr)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"payload model {ref!r} cannot be imported: {exc}") from exc
    if not (isinstance(obj, type) and issubclass(obj, BaseModel)):
        raise ValueError(f"payload model {ref!r} is not a Pydantic model")
    return obj


def manifest_contracts(manifest: Manifest) -> dict[str, dict[str, dict[str, Any]]]:
    """{"publishes": {type: schema}, "consumes": {type: schema}} for the manifest's events.

    A published event's model is its `@event_type` model (the catalogue that AsyncAPI is generated from; the
    module's schemas are imported by then), else the one `payloads` names; a consumed event has a contract when
    `payloads` names the consumer's model (for an event a module publishes and consumes, `payloads` is its
    consumer's reading). A consumer that reads an event generically names none and accepts all."""
    publishes: dict[str, dict[str, Any]] = {}
    consumes: dict[str, dict[str, Any]] = {}
    for type_name in manifest.exposes.events:
        ref = manifest.payloads.get(type_name)
        model = EVENT_CATALOGUE.get(type_name) or (import_model(ref) if ref else None)
        if model is not None:
            publishes[type_name] = publisher_schema(model)
    for type_name in manifest.consumes:
        ref = manifest.payloads.get(type_name)
        if ref:
            consumes[type_name] = consumer_schema(import_model(ref))
    return {"publishes": publishes, "consumes": consumes}


# --------------------------------------------------------------------------- compatibility


def incompatibilities(published: Schema, consumed: Schema) -> list[Incompatibility]:
    """Every way `consumed` (a consumer's schema) rejects data valid under `published` (the publisher's)."""
    out: list[Incompatibility] = []
    _compare(_Side(published), _Side(consumed), published, consumed, "data", out)
    return out


class _Side:
    """One schema document: resolves its own local `$ref`s (`#/$defs/Name`)."""

    def __init__(self, root: Schema) -> None:
        self.defs: Mapping[str, Any] = root.get("$defs") or root.get("definitions") or {}

    def resolve(self, schema: Any, depth: int = 0) -> Schema:
        if not isinstance(schema, Mapping):
            return {} if schema is True or schema is None else {"not": {}}
        ref = schema.get("$ref")
        if isinstance(ref, str) and depth < 32:
            target = self.defs.get(ref.rsplit("/", 1)[-1])
            merged = {**(target or {}), **{k: v for k, v in schema.items() if k != "$ref"}}
            return self.resolve(merged, depth + 1)
        all_of = schema.get("allOf")
        if isinstance(all_of, list) and len(all_of) == 1 and depth < 32:  # Pydantic wraps a described $ref so
            merged = {**self.resolve(all_of[0], depth + 1), **{k: v for k, v in schema.items() if k != "allOf"}}
            return merged
        return schema

    def branches(self, schema: Any) -> list[Schema]:
        """The alternatives of a union (anyOf/oneOf), flattened; a plain schema is one branch."""
        s = self.resolve(schema)
        for key in ("anyOf", "oneOf"):
            alts = s.get(key)
            if isinstance(alts, list):
                return [b for alt in alts for b in self.branches(alt)]
        return [s]


def _types(schema: Schema) -> set[str]:
    t = schema.get("type")
    if isinstance(t, str):
        return {t}
    if isinstance(t, list):
        return {str(x) for x in t}
    values = [schema["const"]] if "const" in schema else schema.get("enum")
    if isinstance(values, list):
        return {_json_type(v) for v in values}
    if "properties" in schema:
        return {"object"}
    if "items" in schema or "prefixItems" in schema:
        return {"array"}
    return {ANY}


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _accepts(consumer_types: set[str], t: str) -> bool:
    return ANY in consumer_types or t in consumer_types or (t == "integer" and "number" in consumer_types)


def _show(types: Iterable[str]) -> str:
    return " | ".join(sorted(types))


def _compare(p_side: _Side, c_side: _Side, published: Any, consumed: Any, path: str,
             out: list[Incompatibility]) -> None:
    c_branches = c_side.branches(consumed)
    p_branches = p_side.branches(published)
    c_types = set().union(*(_types(b) for b in c_branches))
    if ANY in c_types and len(c_branches) == 1 and not c_branches[0].get("enum") and "const" not in c_branches[0]:
        return  # the consumer accepts anything here
    for p in p_branches:
        p_types = _types(p)
        if ANY in p_types:
            continue  # the publisher declares no type: nothing to prove
        wrong = {t for t in p_types if not _accepts(c_types, t)}
        if wrong:
            out.append(Incompatibility(path, f"type changed: the publisher sends {_show(p_types)}, "
                                             f"the consumer expects {_show(c_types - {ANY}) or 'nothing'}"))
            continue
        matching = [c for c in c_branches if any(_accepts(_types(c), t) for t in p_types)]
        _compare_values(p, matching, path, out)
        if "object" in p_types:
            c_obj = next((c for c in matching if "object" in _types(c) or ANY in _types(c)), None)
            if c_obj is not None:
                _compare_objects(p_side, c_side, p, c_obj, path, out)
        if "array" in p_types:
            c_arr = next((c for c in matching if "array" in _types(c)), None)
            if c_arr is not None and "items" in p and "items" in c_arr:
                _compare(p_side, c_side, p["items"], c_arr["items"], f"{path}[]", out)


def _compare_values(p: Schema, matching: list[Schema], path: str, out: list[Incompatibility]) -> None:
    """Enumerations: every value the publisher may send must be one the consumer accepts."""
    allowed: set[Any] = set()
    for c in matching:
        values = [c["const"]] if "const" in c else c.get("enum")
        if not isinstance(values, list):
            return  # one matching branch takes any value of its type
        allowed.update(v for v in values if isinstance(v, (str, int, float, bool)) or v is None)
    if not matching:
        return
    sent = [p["const"]] if "const" in p else p.get("enum")
    if isinstance(sent, list):
        extra = [v for v in sent if v not in allowed]
        if extra:
            out.append(Incompatibility(path, f"the publisher may send {', '.join(map(repr, extra))}, which the "
                                             f"consumer does not accept (it accepts {sorted(map(repr, allowed))})"))
    else:
        out.append(Incompatibility(path, f"the consumer accepts only {sorted(map(repr, allowed))}, "
                                         "the publisher may send any value"))


def _compare_objects(p_side: _Side, c_side: _Side, p: Schema, c: Schema, path: str,
                     out: list[Incompatibility]) -> None:
    p_props: Mapping[str, Any] = p.get("properties") or {}
    c_props: Mapping[str, Any] = c.get("properties") or {}
    if not p_props and not c_props:
        return
    p_open = p.get("additionalProperties", True) is not False and not p_props
    for name in c.get("required") or []:
        if name not in p_props and not p_open:
            out.append(Incompatibility(f"{path}.{name}", "required by the consumer, not sent by the publisher"))
    for name, c_prop in c_props.items():
        if name in p_props:
            _compare(p_side, c_side, p_props[name], c_prop, f"{path}.{name}", out)
    extra = c.get("additionalProperties")
    for name, p_prop in p_props.items():
        if name in c_props:
            continue
        if extra is False:
            out.append(Incompatibility(f"{path}.{name}", "sent by the publisher, forbidden by the consumer "
                                                         "(extra fields not allowed)"))
        elif isinstance(extra, Mapping) and extra:  # a map: every value must fit its schema
            _compare(p_side, c_side, p_prop, extra, f"{path}.{name}", out)
