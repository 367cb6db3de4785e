"""Event contracts checked at docking: a module is refused (or, with `contract_check=warn`, docked with a
warning) when the schema of an event it consumes cannot read what that event's publisher declares, or when the
schema of an event it publishes no longer satisfies a docked consumer — the consumer would dead-letter every
such event. The schemas travel in the manifest (`contracts`, filled in by the SDK from the Pydantic payloads:
quark_sdk.contracts); the comparison is quark_sdk.contracts.incompatibilities.

The compatibility of every (event, publisher, consumer) pair of the docked modules is served at
GET /api/v1/hub/contracts (the console shows it).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Literal

from pydantic import BaseModel

from quark_hub.registry_store import Snapshot
from quark_hub.runtime import HubRuntime
from quark_sdk.contracts import incompatibilities
from quark_sdk.errors import Conflict
from quark_sdk.registry import Manifest

log = logging.getLogger("quark.hub.contracts")

Status = Literal["compatible", "incompatible", "unchecked"]


class ContractProblem(BaseModel):
    field: str
    problem: str


class ContractPair(BaseModel):
    """One event as one module publishes it and another consumes it."""

    event: str
    publisher: str
    consumer: str
    status: Status
    problems: list[ContractProblem] = []


class ContractsView(BaseModel):
    mode: Literal["enforce", "warn", "off"]
    compatible: int
    incompatible: int
    unchecked: int
    items: list[ContractPair]


def pairs(manifests: Iterable[Manifest]) -> list[ContractPair]:
    """Every (event, publisher, consumer) of these manifests with its compatibility, sorted."""
    found = list(manifests)
    out: list[ContractPair] = []
    for consumer in found:
        for event in consumer.consumes:
            for publisher in found:
                if event not in publisher.exposes.events:
                    continue
                out.append(_pair(event, publisher, consumer))
    return sorted(out, key=lambda p: (p.event, p.publisher, p.consumer))


def _pair(event: str, publisher: Manifest, consumer: Manifest) -> ContractPair:
    sent = publisher.contracts.publishes.get(event) if publisher.contracts else None
    read = consumer.contracts.consumes.get(event) if consumer.contracts else None
    if sent is None or read is None:
        return ContractPair(event=event, publisher=publisher.name, consumer=consumer.name, status="unchecked")
    problems = [ContractProblem(field=i.field, problem=i.problem) for i in incompatibilities(sent, read)]
    return ContractPair(event=event, publisher=publisher.name, consumer=consumer.name,
                        status="incompatible" if problems else "compatible", problems=problems)


def docked_manifests(snapshot: Snapshot, *, without: str | None = None) -> list[Manifest]:
    """Manifests of the modules with live instances (a module that left no longer constrains anyone)."""
    return [m.manifest for m in snapshot.modules if m.instances and m.name != without]


def check_docking(rt: HubRuntime, snapshot: Snapshot, manifest: Manifest) -> list[ContractPair]:
    """The pairs this manifest would break against the docked modules; raises Conflict when enforced."""
    mode = rt.settings.contract_check
    if mode == "off":
        return []
    others = docked_manifests(snapshot, without=manifest.name)
    broken = [p for p in pairs([*others, manifest])
              if p.status == "incompatible" and manifest.name in (p.publisher, p.consumer)]
    if not broken:
        return []
    errors = [{"field": f"{p.event}: {f.field}",
               "message": f"{p.consumer} reads {p.event} from {p.publisher}: {f.problem}",
               "event": p.event, "publisher": p.publisher, "consumer": p.consumer}
              for p in broken for f in p.problems]
    first = broken[0]
    summary = (f"event contract broken: {first.event} ({first.publisher} → {first.consumer}), field "
               f"{first.problems[0].field}: {first.problems[0].problem}")
    if len(errors) > 1:
        summary += f" (and {len(errors) - 1} more)"
    if mode == "warn":
        log.warning("docking %s despite %s", manifest.name, summary)
        return broken
    raise Conflict(f"module {manifest.name} refused: {summary}", code="contract-incompatible",
                   extra={"errors": errors})


async def view(rt: HubRuntime) -> ContractsView:
    items = pairs(docked_manifests(await rt.store.snapshot()))
    return ContractsView(mode=rt.settings.contract_check, items=items,
                         compatible=sum(p.status == "compatible" for p in items),
                         incompatible=sum(p.status == "incompatible" for p in items),
                         unchecked=sum(p.status == "unchecked" for p in items))
