"""The operator's API (`/api/v1/hub/operator/...`): what the console's operator pages show and do.

* overview — the docked modules and instances (the registry) with each module's health history (the hub's
  own `quark.hub.module.*` events);
* infrastructure — Valkey (memory, hit rate), NATS JetStream (streams; per consumer: pending, ack-pending,
  redeliveries), and, from every module's SDK endpoint `/operator/<module>/status` (fanned out to each
  instance with the operator's own token): its PostgreSQL database (size, connections, replica), its
  readiness (database, Valkey, NATS, object storage);
* dead letters — the shared dead-letter stream: inspect, replay (the original bytes to the original
  subject: the event keeps its id, so every consumer's inbox applies it at most once), discard; both
  audited (`quark.hub.dead_letter_replayed` / `_discarded`, with `actor_id` and `reason`);
* logs — each instance's recent records (`/operator/<module>/logs`, the SDK's in-memory ring);
* openapi — a module's OpenAPI document, fetched from one of its instances.

Only a user holding both `admin` and `operator` gets in (quark_sdk.operator.require_operator).
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Annotated, Any

import httpx
from fastapi import APIRouter, Body, Path, Query, Request
from pydantic import BaseModel, Field

from quark_hub import dashboard
from quark_hub.runtime import HubRuntime
from quark_sdk.app import RuntimeDep
from quark_sdk.errors import InvalidInput, NotFound, ServiceUnavailable
from quark_sdk.events import EventBus, EventPayload, dead_letter_stream, event_type
from quark_sdk.operator import Operator
from quark_sdk.outbox import add_event
from quark_sdk.routing import GuardedRoute

log = logging.getLogger("quark.hub.operator")

router = APIRouter(prefix="/api/v1/hub/operator", tags=["operator"], route_class=GuardedRoute)
Hub = Annotated[HubRuntime, RuntimeDep]
ModuleName = Annotated[str, Path(max_length=32, pattern=r"^[a-z][a-z0-9-]{0,31}$")]
Seq = Annotated[int, Path(ge=1, le=2**63 - 1)]
FANOUT_TIMEOUT = 5.0
PREVIEW_BYTES = 64 * 1024


class ReasonIn(BaseModel):
    model_config = {"extra": "forbid"}
    reason: str | None = Field(default=None, max_length=500)


@event_type("quark.hub.dead_letter_replayed")
class DeadLetterReplayed(EventPayload):
    """An operator replayed a dead-lettered event to its original subject (audit trail)."""

    actor_id: str
    reason: str | None
    sequence: int
    event_id: str | None
    event_kind: str | None  # the dead event's CloudEvents type
    subject: str
    consumer: str | None


@event_type("quark.hub.dead_letter_discarded")
class DeadLetterDiscarded(EventPayload):
    """An operator discarded a dead-lettered event (audit trail)."""

    actor_id: str
    reason: str | None
    sequence: int
    event_id: str | None
    event_kind: str | None  # the dead event's CloudEvents type
    subject: str
    consumer: str | None


PUBLISHED: tuple[type[EventPayload], ...] = (DeadLetterReplayed, DeadLetterDiscarded)


def _bus(rt: HubRuntime) -> EventBus:
    bus = rt.ctx.bus
    if bus is None or not bus.is_connected:
        raise ServiceUnavailable("NATS is not reachable from the hub right now")
    return bus


def _client(request: Request) -> httpx.AsyncClient:
    """To the instances: real HTTP, or the transport a test station installs (`app.state.operator_transport`)."""
    transport = getattr(request.app.state, "operator_transport", None)
    return httpx.AsyncClient(transport=transport, timeout=FANOUT_TIMEOUT)


async def _fan_out(request: Request, rt: HubRuntime, name: str, path: str,
                   params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """GET `path` on every instance of `name` with the caller's token; one answer (or error) per instance."""
    snap = await rt.store.snapshot()
    module = snap.module(name)
    if module is None or not module.instances:
        raise NotFound(f"no docked module {name!r}")
    auth = request.headers.get("authorization", "")
    clean = {k: v for k, v in (params or {}).items() if v is not None}

    async def one(client: httpx.AsyncClient, instance_id: str, url: str) -> dict[str, Any]:
        try:
            resp = await client.get(url.rstrip("/") + path, params=clean, headers={"Authorization": auth})
            body = resp.json() if resp.headers.get("content-type", "").startswith(("application/json",
                                                                                   "application/problem")) else {}
            if resp.status_code != 200:
                return {"instance_id": instance_id, "error": f"{resp.status_code}: {body.get('detail', '')}"[:300]}
            return {"instance_id": instance_id, **body}
        except (httpx.HTTPError, ValueError) as exc:
            return {"instance_id": instance_id, "error": f"unreachable: {type(exc).__name__}"}

    async with _client(request) as client:
        return list(await asyncio.gather(*(one(client, i.instance_id, i.instance_url) for i in module.instances)))


# -- overview -------------------------------------------------------------------------------------------


@router.get("/overview", summary="Modules, instances and health history (admin and operator)")
async def overview(rt: Hub, _: Operator) -> dict[str, Any]:
    snap = await dashboard.snapshot(rt)
    events = await rt.store.recent_events(rt.settings.recent_events)
    history: dict[str, list[dict[str, Any]]] = {}
    for ev in events:
        history.setdefault(str(ev.get("module") or ""), []).append(
            {k: ev.get(k) for k in ("time", "type", "summary", "instance_id")})
    for m in snap["modules"]:
        m["history"] = history.get(m["name"], [])
        m["openapi"] = f"/api/v1/hub/operator/modules/{m['name']}/openapi.json"
    return snap


# -- infrastructure ---------------------------------------------------------------------------------------


async def valkey_status(rt: HubRuntime) -> dict[str, Any]:
    try:
        info = await rt.store.redis.info()
    except Exception as exc:
        return {"error": f"{type(exc).__name__}: {str(exc)[:200]}"}
    hits, misses = int(info.get("keyspace_hits", 0)), int(info.get("keyspace_misses", 0))
    return {
        "version": info.get("valkey_version") or info.get("redis_version"),
        "used_memory": int(info.get("used_memory", 0)), "used_memory_peak": int(info.get("used_memory_peak", 0)),
        "maxmemory": int(info.get("maxmemory", 0)), "connected_clients": int(info.get("connected_clients", 0)),
        "keyspace_hits": hits, "keyspace_misses": misses,
        "hit_rate": round(hits / (hits + misses), 4) if hits + misses else None,
        "evicted_keys": int(info.get("evicted_keys", 0)), "uptime_seconds": int(info.get("uptime_in_seconds", 0)),
    }


def _prefix(bus: EventBus) -> str:
    return dead_letter_stream(bus.namespace).removesuffix("DLQ")


async def nats_status(rt: HubRuntime) -> dict[str, Any]:
    """This station's streams (its namespace) and their consumers, advisory streams left out."""
    try:
        bus = _bus(rt)
        jsm = bus.js._jsm
        streams = [s for s in await jsm.streams_info()
                   if s.config.name and s.config.name.startswith(_prefix(bus)) and "_ADV_" not in s.config.name]
        out = []
        for s in sorted(streams, key=lambda s: s.config.name or ""):
            consumers = await jsm.consumers_info(str(s.config.name))
            out.append({
                "name": s.config.name, "subjects": list(s.config.subjects or []), "messages": s.state.messages,
                "bytes": s.state.bytes, "first_seq": s.state.first_seq, "last_seq": s.state.last_seq,
                "consumers": [{
                    "name": c.name, "num_pending": c.num_pending, "num_ack_pending": c.num_ack_pending,
                    "num_redelivered": c.num_redelivered, "num_waiting": c.num_waiting,
                    "delivered_seq": c.delivered.stream_seq if c.delivered else None,
                    "ack_floor_seq": c.ack_floor.stream_seq if c.ack_floor else None,
                } for c in sorted(consumers, key=lambda c: c.name or "")],
            })
        return {"streams": out, "dead_letter_stream": dead_letter_stream(bus.namespace)}
    except ServiceUnavailable as exc:
        return {"error": exc.detail}
    except Exception as exc:
        return {"error": f"{type(exc).__name__}: {str(exc)[:200]}"}


@router.get("/infra", summary="Valkey, NATS JetStream, and every module's database and readiness")
async def infra(request: Request, rt: Hub, _: Operator) -> dict[str, Any]:
    snap = await rt.store.snapshot()
    names = [m.name for m in snap.modules if m.instances]
    valkey, nats_info, *statuses = await asyncio.gather(
        valkey_status(rt), nats_status(rt),
        *(_fan_out(request, rt, n, f"/operator/{n}/status") for n in names))
    modules = {n: s for n, s in zip(names, statuses, strict=True)}
    return {"valkey": valkey, "nats": nats_info, "modules": modules}


# -- dead letters -------------------------------------------------------------------------------------------


def _describe(seq: int, msg: Any, *, full: bool = False) -> dict[str, Any]:
    headers = dict(msg.headers or {})
    data: bytes = msg.data or b""
    event: dict[str, Any] = {}
    try:
        parsed = json.loads(data) if data else {}
        event = parsed if isinstance(parsed, dict) else {}
    except ValueError:
        pass
    out: dict[str, Any] = {
        "sequence": seq, "subject": msg.subject, "original_subject": headers.get("Quark-Original-Subject", ""),
        "consumer": headers.get("Quark-Consumer"), "error": headers.get("Quark-Error", ""),
        "event_id": event.get("id"), "event_type": event.get("type"), "event_time": event.get("time"),
        "size": len(data), "pointer": not data,
    }
    if full:
        out["headers"] = headers
        out["event"] = event or None
        out["raw"] = None if event else data[:PREVIEW_BYTES].decode("utf-8", "replace")
    return out


@router.get("/dead-letters", summary="The dead-letter stream, oldest first (keyset on the sequence)")
async def dead_letters(rt: Hub, _: Operator, limit: Annotated[int, Query(ge=1, le=200)] = 50,
                       after: Annotated[int, Query(ge=0)] = 0,
                       consumer: Annotated[str | None, Query(max_length=100)] = None) -> dict[str, Any]:
    bus = _bus(rt)
    stream = dead_letter_stream(bus.namespace)
    jsm = bus.js._jsm
    try:
        info = await jsm.stream_info(stream)
    except Exception:
        return {"stream": stream, "total": 0, "items": [], "next_after": None}
    items: list[dict[str, Any]] = []
    seq = max(after + 1, info.state.first_seq or 1)
    last = info.state.last_seq or 0
    while seq <= last and len(items) < limit:
        try:
            msg = await jsm.get_msg(stream, seq, next=True)
        except Exception:
            break
        real = int(msg.seq or seq)
        item = _describe(real, msg)
        if consumer is None or item["consumer"] == consumer:
            items.append(item)
        seq = real + 1
    more = seq <= last
    return {"stream": stream, "total": info.state.messages, "items": items,
            "next_after": items[-1]["sequence"] if items and more else None}


async def _get_dead_letter(bus: EventBus, seq: int) -> Any:
    try:
        return await bus.js._jsm.get_msg(dead_letter_stream(bus.namespace), seq)
    except Exception:
        raise NotFound(f"no dead letter at sequence {seq}") from None


@router.get("/dead-letters/{seq}", summary="One dead letter: headers, error, the whole event")
async def dead_letter(seq: Seq, rt: Hub, _: Operator) -> dict[str, Any]:
    bus = _bus(rt)
    return _describe(seq, await _get_dead_letter(bus, seq), full=True)


async def _audit(rt: HubRuntime, payload: DeadLetterReplayed | DeadLetterDiscarded) -> None:
    async with rt.db.session() as session, session.begin():
        await add_event(session, payload, subject=str(payload.sequence))


@router.post("/dead-letters/{seq}/replay", summary="Re-publish a dead letter to its original subject, same event id")
async def replay(seq: Seq, rt: Hub, operator: Operator,
                 body: Annotated[ReasonIn | None, Body()] = None) -> dict[str, Any]:
    """The original bytes go back to the original subject (the event id unchanged: a consumer that already
    applied it finds it in its inbox); then the dead letter leaves the stream. A pointer dead letter (a
    private event left in its own stream) is re-read from that stream by sequence."""
    bus = _bus(rt)
    msg = await _get_dead_letter(bus, seq)
    item = _describe(seq, msg)
    data: bytes = msg.data or b""
    subject = item["original_subject"]
    if not data and ":" in subject:  # "<stream>:<seq>": the message stayed in its stream
        stream, _, at = subject.rpartition(":")
        try:
            original = await bus.js._jsm.get_msg(stream, int(at))
        except Exception:
            raise NotFound(f"the dead letter points at {subject}, which is no longer in its stream") from None
        data, subject = original.data or b"", original.subject or ""
    if not data or not subject:
        raise InvalidInput("this dead letter has nothing to replay (no event or no original subject); discard it")
    headers = {"Nats-Msg-Id": f"replay:{dead_letter_stream(bus.namespace)}:{seq}", "Quark-Replayed-From": str(seq)}
    try:
        ack = await bus.js.publish(subject, data, headers=headers, timeout=5)
    except Exception as exc:
        raise ServiceUnavailable(f"could not publish to {subject}: {type(exc).__name__}") from None
    reason = ((body.reason if body else None) or "").strip() or None
    await _audit(rt, DeadLetterReplayed(actor_id=operator.subject, reason=reason, sequence=seq,
                                        event_id=item["event_id"], event_kind=item["event_type"], subject=subject,
                                        consumer=item["consumer"]))
    await _delete(bus, seq)
    log.info("operator %s replayed dead letter %d (%s) to %s", operator.subject, seq, item["event_id"], subject)
    return {"replayed": seq, "subject": subject, "stream": ack.stream, "stream_seq": ack.seq,
            "duplicate": bool(ack.duplicate), "event_id": item["event_id"]}


async def _delete(bus: EventBus, seq: int) -> None:
    try:
        await bus.js._jsm.delete_msg(dead_letter_stream(bus.namespace), seq)
    except Exception as exc:  # already gone (a concurrent discard): nothing left to do
        log.info("dead letter %d already removed: %r", seq, exc)


@router.delete("/dead-letters/{seq}", summary="Discard a dead letter (audited)")
async def discard(seq: Seq, rt: Hub, operator: Operator,
                  reason: Annotated[str | None, Query(max_length=500)] = None) -> dict[str, Any]:
    bus = _bus(rt)
    item = _describe(seq, await _get_dead_letter(bus, seq))
    await _audit(rt, DeadLetterDiscarded(actor_id=operator.subject, reason=(reason or "").strip() or None,
                                         sequence=seq, event_id=item["event_id"], event_kind=item["event_type"],
                                         subject=item["original_subject"], consumer=item["consumer"]))
    await _delete(bus, seq)
    return {"discarded": seq, "event_id": item["event_id"]}


# -- logs and API documents ----------------------------------------------------------------------------------


@router.get("/modules/{name}/logs", summary="Recent log records of every instance of a module")
async def module_logs(request: Request, name: ModuleName, rt: Hub, _: Operator,
                      level: Annotated[str | None, Query(pattern="^(?i:debug|info|warning|error|critical)$")] = None,
                      trace_id: Annotated[str | None, Query(pattern="^[0-9a-f]{32}$")] = None,
                      q: Annotated[str | None, Query(max_length=200)] = None,
                      limit: Annotated[int, Query(ge=1, le=1000)] = 200) -> dict[str, Any]:
    answers = await _fan_out(request, rt, name, f"/operator/{name}/logs",
                             {"level": level, "trace_id": trace_id, "q": q, "limit": limit})
    items = [dict(rec, instance_id=a["instance_id"]) for a in answers for rec in a.get("items", [])]
    items.sort(key=lambda r: str(r.get("time", "")), reverse=True)
    return {"module": name, "items": items[:limit],
            "errors": [{"instance_id": a["instance_id"], "error": a["error"]} for a in answers if "error" in a]}


@router.get("/modules/{name}/openapi.json", summary="A module's OpenAPI document (from one of its instances)")
async def module_openapi(request: Request, name: ModuleName, rt: Hub, _: Operator) -> Any:
    snap = await rt.store.snapshot()
    module = snap.module(name)
    if module is None or not module.instances:
        raise NotFound(f"no docked module {name!r}")
    async with _client(request) as client:
        for inst in sorted(module.instances, key=lambda i: i.health != "healthy"):
            base = inst.instance_url.rstrip("/")
            # An instance of its own serves /openapi.json; the embedded station serves /openapi/<module>.json.
            for path in ("/openapi.json", f"/openapi/{name}.json"):
                try:
                    resp = await client.get(base + path)
                    doc = resp.json() if resp.status_code == 200 else None
                except (httpx.HTTPError, ValueError):
                    doc = None
                if isinstance(doc, dict) and any(str(p).startswith(tuple(module.manifest.exposes.api))
                                                 for p in doc.get("paths", {})):
                    return doc
    raise ServiceUnavailable(f"no instance of {name} served its OpenAPI document")
