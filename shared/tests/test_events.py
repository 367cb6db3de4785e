"""Outbox → JetStream → inbox, against real PostgreSQL and NATS servers."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from pathlib import Path
from typing import Any

import nats
from sqlalchemy import func, select, text

from quark_sdk.embedded import EmbeddedNats
from quark_sdk.events import CloudEvent, dead_letter_stream, stream_for, subject_for
from quark_sdk.outbox import OutboxBatch, outbox_table
from quark_sdk.testing import QuarkTestEnv, RunningModule, eventually, read_stream
from sample.module import ATTEMPTS, Noted, module


async def effects(svc: RunningModule) -> dict[str, int]:
    resp = await svc.client.get("/api/v1/sample/effects")
    assert resp.status_code == 200
    return resp.json()


async def stream_messages(svc: RunningModule, domain: str) -> int:
    assert svc.ctx.bus is not None
    info = await svc.ctx.bus.js.stream_info(stream_for(domain, svc.settings.event_namespace))
    return int(info.state.messages)


async def dead_letters(svc: RunningModule) -> list[tuple[dict[str, str], bytes]]:
    assert svc.ctx.bus is not None
    messages = await read_stream(svc.ctx.bus.js, dead_letter_stream(svc.settings.event_namespace))
    return [(dict(msg.headers or {}), msg.data or b"") for msg in messages]


async def note_with_relay_by_hand(quark: QuarkTestEnv, text: str) -> tuple[RunningModule, str]:
    """The sample module with its relay stopped (the test plays it) and one note's event waiting in the outbox."""
    svc = await quark.start(module)
    assert svc.ctx.relay is not None and svc.ctx.bus is not None
    await svc.ctx.relay.stop()
    resp = await svc.client.post("/api/v1/sample/notes", params={"text": text})
    return svc, resp.json()["event_id"]


async def test_committed_event_is_consumed_exactly_once(quark: QuarkTestEnv) -> None:
    svc = await quark.start(module)
    resp = await svc.client.post("/api/v1/sample/notes", params={"text": "hello"})
    assert resp.status_code == 201
    event_id = resp.json()["event_id"]
    assert await eventually(lambda: effects(svc), what="effect applied") == {event_id: 1}
    assert await stream_messages(svc, "sample") == 1


async def test_rolled_back_event_is_never_published(quark: QuarkTestEnv) -> None:
    svc = await quark.start(module)
    resp = await svc.client.post("/api/v1/sample/notes", params={"text": "nope", "fail": True})
    assert resp.status_code == 409
    assert resp.headers["content-type"] == "application/problem+json"
    ok = await svc.client.post("/api/v1/sample/notes", params={"text": "yes"})
    good_id = ok.json()["event_id"]
    # Once the later, committed event has been consumed, the earlier one would have been too.
    assert await eventually(lambda: effects(svc)) == {good_id: 1}
    assert await stream_messages(svc, "sample") == 1
    async with svc.ctx.database().session() as session:
        assert await session.scalar(select(func.count()).select_from(outbox_table)) == 1


async def test_relay_dying_between_publish_and_mark_sent_gives_one_effect(quark: QuarkTestEnv) -> None:
    svc, event_id = await note_with_relay_by_hand(quark, "crash")
    relay, bus, db = svc.ctx.relay, svc.ctx.bus, svc.ctx.database()
    assert relay is not None and bus is not None
    async with db.session() as session:
        row = (await session.execute(select(outbox_table).where(outbox_table.c.id == event_id))).one()
    # The "dead" relay published, then died before marking the row sent.
    acks = await bus.publish_many([(row.id, row.type, row.body.encode(), dict(row.headers))])
    assert acks == [True]
    # The restarted relay publishes the row again: JetStream reports a duplicate and stores nothing.
    ack = await bus.js.publish(subject_for(row.type, bus.namespace), row.body.encode(),
                               headers={"Nats-Msg-Id": row.id})
    assert ack.duplicate is True
    assert await relay.publish_pending() == 1
    assert await relay.publish_pending() == 0
    assert await stream_messages(svc, "sample") == 1
    # Even a copy outside the dedupe window (new Nats-Msg-Id, same event id) is absorbed by the inbox.
    await bus.js.publish(subject_for(row.type, bus.namespace), row.body.encode(),
                         headers={"Nats-Msg-Id": "replay-" + row.id})
    assert await stream_messages(svc, "sample") == 2
    await eventually(lambda: effects(svc))
    runner = svc.ctx.consumers[0]

    async def both_delivered() -> bool:
        info = await bus.js.consumer_info(stream_for("sample", bus.namespace), runner.durable)
        return info.num_ack_pending == 0 and info.delivered.stream_seq == 2

    await eventually(both_delivered, what="both copies delivered and acked")
    assert await effects(svc) == {event_id: 1}


async def test_events_written_while_nats_is_down_are_delivered_after_it_returns(
    quark: QuarkTestEnv, tmp_path: Path
) -> None:
    own_nats = EmbeddedNats(tmp_path / "nats").start()
    try:
        svc = await quark.start(module, nats_url=own_nats.url)
        await eventually(lambda: svc.ctx.consumers[0].ready.is_set(), what="consumer subscribed")
        own_nats.stop()
        ids = []
        for i in range(5):
            resp = await svc.client.post("/api/v1/sample/notes", params={"text": f"offline {i}"})
            assert resp.status_code == 201, resp.text
            ids.append(resp.json()["event_id"])
        assert svc.ctx.relay is not None
        assert await svc.ctx.relay.backlog() == 5
        ready = await svc.client.get("/health/ready")
        assert ready.status_code == 503 and ready.json()["checks"]["nats"] != "ok"
        own_nats.start()  # same port, same JetStream store

        async def all_applied() -> dict[str, int] | None:
            got = await effects(svc)
            return got if len(got) == 5 else None

        assert await eventually(all_applied, timeout=30, what="offline events delivered") == {i: 1 for i in ids}
        assert await svc.ctx.relay.backlog() == 0
    finally:
        own_nats.stop()


async def test_handler_failing_twice_then_succeeding_applies_once(quark: QuarkTestEnv) -> None:
    svc = await quark.start(module)
    resp = await svc.client.post("/api/v1/sample/notes", params={"text": "flaky", "fail_times": 2})
    event_id = resp.json()["event_id"]
    assert await eventually(lambda: effects(svc), what="flaky event applied") == {event_id: 1}
    assert ATTEMPTS[event_id] == 3
    assert await dead_letters(svc) == []


async def test_poison_event_goes_to_dead_letter_and_consumption_continues(quark: QuarkTestEnv) -> None:
    svc = await quark.start(module, consumer_max_deliver=3)
    poison = (await svc.client.post("/api/v1/sample/notes", params={"text": "bad", "poison": True})).json()
    good = (await svc.client.post("/api/v1/sample/notes", params={"text": "good"})).json()
    assert await eventually(lambda: effects(svc)) == {good["event_id"]: 1}

    async def dead() -> list[tuple[dict[str, str], bytes]]:
        return await dead_letters(svc)

    letters = await eventually(dead, what="poison event dead-lettered")
    assert len(letters) == 1
    headers, body = letters[0]
    assert json.loads(body)["id"] == poison["event_id"]
    assert "RuntimeError" in headers["Quark-Error"]
    # max_deliver deliveries; when the poison was fetched in one batch with the good event, the first delivery
    # ran its handler twice (the batch's transaction, then the poison alone after the batch rolled back).
    assert ATTEMPTS[poison["event_id"]] in (3, 4)


async def test_permanent_failure_is_dead_lettered_at_once(quark: QuarkTestEnv) -> None:
    svc = await quark.start(module)
    bad = (await svc.client.post("/api/v1/sample/notes", params={"text": "x", "permanent": True})).json()
    letters = await eventually(lambda: dead_letters(svc), what="dead-lettered")
    assert json.loads(letters[0][1])["id"] == bad["event_id"]
    assert ATTEMPTS[bad["event_id"]] == 1


async def test_malformed_envelope_is_dead_lettered_and_consumer_keeps_going(quark: QuarkTestEnv) -> None:
    svc = await quark.start(module)
    await eventually(lambda: svc.ctx.consumers[0].ready.is_set())
    nc = await nats.connect(quark.servers.nats_url)
    try:
        js = nc.jetstream()
        subject = subject_for("quark.sample.noted", quark.namespace)
        await js.publish(subject, b"{not json", headers={"Nats-Msg-Id": str(uuid.uuid4())})
        missing_fields = json.dumps({"specversion": "1.0", "type": "quark.sample.noted"}).encode()
        await js.publish(subject, missing_fields, headers={"Nats-Msg-Id": str(uuid.uuid4())})
        good = CloudEvent.new(Noted(text="after garbage"), source="quark/test")
        await js.publish(subject, good.to_bytes(), headers={"Nats-Msg-Id": good.id})
    finally:
        await nc.close()
    assert await eventually(lambda: effects(svc)) == {good.id: 1}
    letters = await eventually(lambda: dead_letters(svc))
    assert len(letters) == 2
    assert all(h["Quark-Error"].startswith("malformed envelope") for h, _ in letters)


async def test_namespaces_isolate_tests(quark: QuarkTestEnv) -> None:
    svc = await quark.start(module)
    assert svc.settings.event_namespace == quark.namespace
    assert stream_for("sample", quark.namespace).startswith(quark.namespace.upper() + "_")
    assert subject_for("quark.sample.noted", quark.namespace) == f"{quark.namespace}.quark.sample.noted"


async def test_consumer_holds_events_while_its_database_is_down(quark: QuarkTestEnv, tmp_path: Path) -> None:
    """A database outage is not the event's fault: no retries are spent, nothing is dead-lettered."""
    from quark_sdk.config import to_async_url
    from quark_sdk.db import upgrade_database_async
    from quark_sdk.embedded import EmbeddedPostgres

    pg = EmbeddedPostgres(tmp_path / "pg").start()
    try:
        pg.ensure_database("sample")
        url = to_async_url(pg.dsn("sample"))
        await upgrade_database_async(module.migrations_dir, url)
        svc = await quark.start(module, database_url=url)
        runner = svc.ctx.consumers[0]
        await eventually(lambda: runner.ready.is_set())
        pg.stop()
        event = CloudEvent.new(Noted(text="during outage"), source="quark/test")
        assert svc.ctx.bus is not None
        await svc.ctx.bus.publish(event)
        await eventually(lambda: runner.held_rounds >= 3, what="consumer holding the batch")
        pg.start()
        assert await eventually(lambda: effects(svc), timeout=30) == {event.id: 1}
        info = await svc.ctx.bus.js.consumer_info(stream_for("sample", quark.namespace), runner.durable)
        assert info.num_redelivered == 0
        assert ATTEMPTS[event.id] == 1
        assert await dead_letters(svc) == []
    finally:
        pg.stop()


async def test_relay_linger_batches_a_stream_of_commits(quark: QuarkTestEnv) -> None:
    """With `outbox_linger`, the first event after a quiet spell goes at once and the events committed
    while the relay lingers share the next round (one transaction, one JetStream flush)."""
    svc = await quark.start(module, outbox_linger=0.5)
    relay = svc.ctx.relay
    assert relay is not None and relay.linger == 0.5
    rounds: list[int] = []
    publish = relay.publish_pending

    async def counted() -> int:
        n = await publish()
        if n:
            rounds.append(n)
        return n

    relay.publish_pending = counted  # type: ignore[method-assign]
    first = await svc.client.post("/api/v1/sample/notes", params={"text": "first"})
    assert first.status_code == 201
    await eventually(lambda: rounds == [1], what="the first event published alone")
    for i in range(10):  # ten commits, each waking the relay, well within the linger
        assert (await svc.client.post("/api/v1/sample/notes", params={"text": f"burst {i}"})).status_code == 201
    await eventually(lambda: sum(rounds) == 11, what="the burst published")
    assert len(rounds) <= 3, rounds  # not one round per commit
    assert await eventually(lambda: _all_effects(svc, 11)) is True


async def _all_effects(svc: RunningModule, n: int) -> bool:
    return len(await effects(svc)) == n


async def test_outbox_batch_writes_a_transactions_events_with_one_insert(quark: QuarkTestEnv) -> None:
    svc = await quark.start(module)
    statements: list[str] = []
    async with svc.ctx.database().transaction() as session:
        from sqlalchemy import event as sa_event

        def seen(conn, cursor, statement, params, context, executemany) -> None:  # type: ignore[no-untyped-def]
            statements.append(statement)

        sync_engine = (await session.connection()).sync_engine
        sa_event.listen(sync_engine, "before_cursor_execute", seen)
        try:
            batch = OutboxBatch(session)
            ids = [batch.add(Noted(text=f"batched {i}")).id for i in range(3)]
            assert statements == []  # nothing written until flush
            await batch.flush()
            await batch.flush()  # nothing left: no statement
        finally:
            sa_event.remove(sync_engine, "before_cursor_execute", seen)
    assert len([s for s in statements if s.lstrip().upper().startswith("INSERT")]) == 1

    async def all_applied() -> dict[str, int] | None:
        got = await effects(svc)
        return got if len(got) == 3 else None

    assert await eventually(all_applied, what="batched events consumed") == {i: 1 for i in ids}


async def test_relay_cancelled_mid_round_leaves_no_open_transaction(quark: QuarkTestEnv) -> None:
    """The relay runs on the pool's asyncpg driver: a round cancelled while JetStream has not answered (a
    shutdown) must not hand its connection, rows still locked, to the next request."""
    svc, event_id = await note_with_relay_by_hand(quark, "stuck")
    relay, bus, db = svc.ctx.relay, svc.ctx.bus, svc.ctx.database()
    assert relay is not None and bus is not None
    publishing = asyncio.Event()
    real_publish = bus.publish_many

    async def never_answers(items: Any) -> list[bool]:
        publishing.set()
        await asyncio.Event().wait()
        return []

    bus.publish_many = never_answers  # type: ignore[method-assign]
    stuck = asyncio.create_task(relay.publish_pending())
    await asyncio.wait_for(publishing.wait(), 10)
    stuck.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await stuck
    bus.publish_many = real_publish  # type: ignore[method-assign]
    async with db.session() as session:
        idle_in_tx = await session.scalar(text(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND state LIKE 'idle in transaction%' AND pid <> pg_backend_pid()"))
    assert idle_in_tx == 0
    # The row was not marked sent and is not locked: the next round publishes it, once.
    assert await relay.publish_pending() == 1
    assert await eventually(lambda: effects(svc), what="effect applied") == {event_id: 1}
    # And every pooled connection still commits for real (none runs inside a leftover transaction).
    for _ in range(db.engine.pool.size() + 1):  # type: ignore[attr-defined]
        async with db.transaction() as session:
            await session.execute(text("SELECT 1"))
    async with db.session() as session:
        assert await session.scalar(select(func.count()).select_from(outbox_table)
                                    .where(outbox_table.c.published_at.is_(None))) == 0
