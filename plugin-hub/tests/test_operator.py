"""The operator's API of the hub: only admin+operator users get in (every route, table-driven); dead letters
are listed, inspected, replayed to their original subject with the same event id (audited), discarded
(audited); infrastructure and a module's logs come back (the SDK's operator endpoints on the instance)."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from hub_testkit import start_hub
from sqlalchemy import text

from quark_sdk.events import CloudEvent, dead_letter_stream, stream_for, subject_for
from quark_sdk.testing import QuarkTestEnv, RunningModule, assert_problem

OP = "/api/v1/hub/operator"
ROUTES = [("GET", "/overview"), ("GET", "/infra"), ("GET", "/dead-letters"), ("GET", "/dead-letters/1"),
          ("POST", "/dead-letters/1/replay"), ("DELETE", "/dead-letters/1"), ("GET", "/modules/hub/logs"),
          ("GET", "/modules/hub/openapi.json")]


def headers(quark: QuarkTestEnv, *roles: str) -> dict[str, str]:
    return quark.bearer(quark.user_token(roles=roles))


@pytest.mark.parametrize(("method", "path"), ROUTES)
async def test_only_admins_holding_operator_get_in(quark: QuarkTestEnv, tmp_path: Path, method: str,
                                                   path: str) -> None:
    hub = await start_hub(quark, tmp_path)
    for roles in (("user",), ("moderator",), ("admin",), ("operator",)):
        assert_problem(await hub.client.request(method, OP + path, headers=headers(quark, *roles)), 403)
    assert_problem(await hub.client.request(method, OP + path), 401)


async def dead_letter(hub: RunningModule, subject_type: str = "quark.sample.noted") -> CloudEvent:
    """Dead-letter an event as the SDK's consumer does: the event's bytes, the original subject in a header."""
    bus = hub.ctx.bus
    assert bus is not None
    event = CloudEvent(id=str(uuid.uuid4()), source="quark/sample", type=subject_type, time=datetime.now(UTC),
                       data={"text": "hello"})
    await bus.ensure_stream("sample")
    await bus.ensure_stream("dlq")
    await bus.js.publish(subject_for("quark.dlq.sample.effects", bus.namespace), event.to_bytes(), headers={
        "Quark-Original-Subject": subject_for(subject_type, bus.namespace), "Quark-Consumer": "sample-effects",
        "Quark-Error": "RuntimeError: boom", "Nats-Msg-Id": f"test:{event.id}"})
    return event


async def hub_events(hub: RunningModule, type_name: str) -> list[dict[str, Any]]:
    async with hub.ctx.database().session() as session:
        rows = (await session.execute(text("SELECT body FROM quark_outbox WHERE type = :t ORDER BY seq"),
                                      {"t": type_name})).all()
    return [json.loads(r.body)["data"] for r in rows]


async def test_dead_letters_inspect_replay_discard(quark: QuarkTestEnv, tmp_path: Path) -> None:
    hub = await start_hub(quark, tmp_path)
    op = headers(quark, "admin", "operator")
    empty = (await hub.client.get(f"{OP}/dead-letters", headers=op)).json()
    assert empty["items"] == []
    first, second = await dead_letter(hub), await dead_letter(hub)
    listing = (await hub.client.get(f"{OP}/dead-letters", headers=op)).json()
    assert [(i["event_id"], i["consumer"], i["error"]) for i in listing["items"]] == [
        (first.id, "sample-effects", "RuntimeError: boom"), (second.id, "sample-effects", "RuntimeError: boom")]
    seq = listing["items"][0]["sequence"]
    one = (await hub.client.get(f"{OP}/dead-letters/{seq}", headers=op)).json()
    assert one["event"]["id"] == first.id and one["event"]["data"] == {"text": "hello"}

    replayed = await hub.client.post(f"{OP}/dead-letters/{seq}/replay", json={"reason": "fixed"}, headers=op)
    assert replayed.status_code == 200, replayed.text
    assert replayed.json()["event_id"] == first.id and replayed.json()["duplicate"] is False
    # The original bytes on the original subject: the same event id, so consumers' inboxes dedupe it.
    bus = hub.ctx.bus
    assert bus is not None
    stream = stream_for("sample", bus.namespace)
    info = await bus.js.stream_info(stream)
    back = CloudEvent.from_bytes((await bus.js.get_msg(stream, info.state.last_seq)).data or b"")
    assert back.id == first.id and back.type == "quark.sample.noted"
    # Gone from the dead letters; a second replay is a 404 and publishes nothing.
    assert_problem(await hub.client.post(f"{OP}/dead-letters/{seq}/replay", headers=op), 404)
    assert (await bus.js.stream_info(stream)).state.messages == info.state.messages

    other = listing["items"][1]["sequence"]
    discarded = await hub.client.delete(f"{OP}/dead-letters/{other}?reason=obsolete", headers=op)
    assert discarded.status_code == 200 and discarded.json()["event_id"] == second.id
    assert (await hub.client.get(f"{OP}/dead-letters", headers=op)).json()["items"] == []
    assert (await bus.js.stream_info(dead_letter_stream(bus.namespace))).state.messages == 0

    actor = [e for e in await hub_events(hub, "quark.hub.dead_letter_replayed")]
    assert [(e["event_id"], e["reason"], e["event_kind"]) for e in actor] == [(first.id, "fixed", "quark.sample.noted")]
    gone = await hub_events(hub, "quark.hub.dead_letter_discarded")
    assert [(e["event_id"], e["reason"]) for e in gone] == [(second.id, "obsolete")]
    assert all(e["actor_id"] for e in actor + gone)
    # Bad input: a 4xx, never a 5xx.
    for path in ("/dead-letters/0", "/dead-letters/x", "/dead-letters?limit=0", "/dead-letters?after=-1"):
        resp = await hub.client.get(OP + path, headers=op)
        assert 400 <= resp.status_code < 500, (path, resp.status_code)


async def test_infra_and_logs_through_the_modules_operator_endpoints(quark: QuarkTestEnv, tmp_path: Path) -> None:
    hub = await start_hub(quark, tmp_path, self_dock=True)
    # The hub docks itself; it reaches its own instance's operator endpoints in-process.
    hub.app.state.operator_transport = httpx.ASGITransport(app=hub.app)
    op = headers(quark, "admin", "operator")

    async def docked() -> bool:
        return bool((await hub.client.get(f"{OP}/overview", headers=op)).json()["modules"])

    from quark_sdk.testing import eventually

    await eventually(docked, what="the hub docked in its own registry")
    import logging

    logging.getLogger("quark.hub.test").error("operator test marker %s", "xyzzy")
    infra = (await hub.client.get(f"{OP}/infra", headers=op)).json()
    assert infra["valkey"]["used_memory"] > 0 and "hit_rate" in infra["valkey"]
    assert isinstance(infra["nats"]["streams"], list)
    [answer] = infra["modules"]["hub"]
    assert answer["database"]["size_bytes"] > 0 and answer["database"]["connections"] >= 1
    assert answer["readiness"]["database"] == "ok"
    logs = (await hub.client.get(f"{OP}/modules/hub/logs", params={"level": "error", "q": "xyzzy"},
                                 headers=op)).json()
    assert [r["message"] for r in logs["items"]] == ["operator test marker xyzzy"]
    assert_problem(await hub.client.get(f"{OP}/modules/nothing/logs", headers=op), 404)
    assert_problem(await hub.client.get(f"{OP}/modules/hub/logs?trace_id=nothex", headers=op), 422)
