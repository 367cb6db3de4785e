"""The WebSocket endpoint on a real port (uvicorn): authentication, origin, frames, limits, back-pressure."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import socket

import pytest
import websockets
from messaging_testkit import Cluster, direct, group, send


async def test_token_by_subprotocol_or_first_frame(cluster: Cluster) -> None:
    inst = await (await cluster.start()).serve()
    alice, bob = await cluster.people("alice", "bob")
    chat = await direct(inst, alice, bob)
    by_protocol = await inst.connect(alice, via="protocol")
    assert by_protocol.ws.subprotocol == "quark.v1"  # the token is never echoed back
    by_frame = await inst.connect(bob, via="frame")
    ready = by_frame.of("ready")[0]
    assert ready["user_id"] == bob.id
    await send(inst, alice, chat, "to both devices")
    await by_frame.wait_for("message")
    await by_protocol.wait_for("message")
    pong = await by_frame.request({"type": "ping", "t": 1})
    assert pong["type"] == "pong"


@pytest.mark.parametrize("origin", ["http://evil.example", "null"])
async def test_bad_origin_never_gets_101(cluster: Cluster, origin: str) -> None:
    inst = await (await cluster.start(allowed_origins=["https://app.quark.example"])).serve()
    alice = cluster.person("alice")
    with pytest.raises(websockets.InvalidStatus) as refused:
        await inst.connect(alice, origin=origin)
    assert refused.value.response.status_code == 403
    ok = await inst.connect(alice, origin="https://app.quark.example")
    assert ok.of("ready")


async def test_missing_bad_or_expired_token_closes_with_1008(cluster: Cluster) -> None:
    inst = await (await cluster.start(ws_auth_timeout=0.5)).serve()
    alice = cluster.person("alice")
    expired = cluster.quark.user_token(alice.id, username="alice", ttl=-120)
    for client in [
        await inst.connect(None, via="frame", token=expired, ready=False),
        await inst.connect(None, via="protocol", token=expired, ready=False),
        await inst.connect(None, via="protocol", token="not-a-jwt", ready=False),
        await inst.connect(None, via="frame", token="", ready=False),
    ]:
        assert await client.closed() == 1008
        assert not client.of("ready")
    # No token at all: the first frame is not an auth frame, or nothing comes within the auth timeout.
    wrong = await inst.connect(None, via="none", ready=False)
    await wrong.send({"type": "send", "body": "hi"})
    assert await wrong.closed() == 1008
    silent = await inst.connect(None, via="none", ready=False)
    assert await silent.closed() == 1008
    # A service token is not a user.
    svc = await inst.connect(None, token=cluster.quark.service_token("blog", ("x",)), ready=False)
    assert await svc.closed() == 1008


async def test_frames_send_ack_typing_read_and_errors(cluster: Cluster) -> None:
    inst = await (await cluster.start()).serve()
    alice, bob, eve = await cluster.people("alice", "bob", "eve")
    chat = await group(inst, alice, bob)
    a = await inst.connect(alice)
    b = await inst.connect(bob)
    e = await inst.connect(eve)
    ack = await a.request({"type": "send", "conversation_id": chat, "body": "hello", "client_msg_id": "k1"})
    assert ack["type"] == "ack" and ack["seq"] == 1 and ack["duplicate"] is False
    again = await a.request({"type": "send", "conversation_id": chat, "body": "hello", "client_msg_id": "k1"})
    assert again["message_id"] == ack["message_id"] and again["duplicate"] is True
    got = await b.wait_for("message")
    assert got[0]["message"]["body"] == "hello"
    await b.send({"type": "typing", "conversation_id": chat})
    await a.wait_for("typing", lambda f: f["user_id"] == bob.id)
    read = await b.request({"type": "read", "conversation_id": chat, "seq": 1})
    assert read["last_read_seq"] == 1
    await a.wait_for("read", lambda f: f["user_id"] == bob.id and f["seq"] == 1)
    edit = await a.request({"type": "edit", "message_id": ack["message_id"], "body": "hello!"})
    assert edit["type"] == "ack"
    await b.wait_for("message.updated")
    # Bad frames get an error frame with the ref; the connection stays open.
    for frame, status in [
        ({"type": "send", "conversation_id": "nope", "body": "x"}, 422),
        ({"type": "send", "conversation_id": chat, "body": ""}, 422),
        ({"type": "send", "conversation_id": chat, "body": "x", "attachments": "m1"}, 422),
        ({"type": "edit", "message_id": ack["message_id"], "body": "mine now"}, 403),
        ({"type": "resume", "after": []}, 422),
        ({"type": "warp"}, 422),
    ]:
        sender = b if frame.get("type") == "edit" else a
        answer = await sender.request(frame)
        assert answer["type"] == "error" and answer["status"] == status, (frame, answer)
    answer = await e.request({"type": "send", "conversation_id": chat, "body": "let me in"})
    assert answer["status"] == 404
    await a.send({"type": 1})
    await a.ws.send("{not json")
    await a.wait_for("error", count=5 + 2)
    assert (await a.request({"type": "ping"}))["type"] == "pong"
    assert not e.of("message")  # a non-member never sees the group's messages


async def test_websocket_rate_limit_closes_with_reason(cluster: Cluster) -> None:
    inst = await (await cluster.start(message_rate_limit=2)).serve()
    alice, bob = await cluster.people("alice", "bob")
    chat = await direct(inst, alice, bob)
    a = await inst.connect(alice)
    for i in range(2):
        assert (await a.request({"type": "send", "conversation_id": chat, "body": f"m{i}"}))["type"] == "ack"
    await a.send({"type": "send", "conversation_id": chat, "body": "too many"})
    assert await a.closed() == 4029
    assert a.closed_reason is not None and a.closed_reason.startswith("rate limited")


async def test_oversized_frame_closes_with_1009(cluster: Cluster) -> None:
    inst = await (await cluster.start(max_frame_bytes=2048)).serve()
    a = await inst.connect(cluster.person("alice"))
    await a.ws.send(json.dumps({"type": "ping", "pad": "x" * 4096}))
    assert await a.closed() == 1009


async def test_slow_client_is_dropped_without_stalling_others(cluster: Cluster) -> None:
    """A client that stops reading fills its bounded queue and is closed with 1013; a reading client on the
    same instance receives every frame of the same fan-out meanwhile."""
    inst = await (await cluster.start(ws_send_queue=4)).serve()
    slow_p, fast_p = cluster.person("slow"), cluster.person("fast")
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", inst.port))
    slow = await websockets.connect(
        inst.ws_url,
        sock=sock,
        subprotocols=["quark.v1", f"bearer.{slow_p.token}"],  # type: ignore[list-item]
        max_queue=1,
        compression=None,
    )
    json.loads(await slow.recv())  # ready; then it stops reading
    fast = await inst.connect(fast_p)
    pad = base64.b64encode(os.urandom(45_000)).decode()  # 60 kB that compression cannot shrink
    frames = 200
    for i in range(frames):
        # Paced by the fast client: it keeps up, the slow one does not.
        await inst.rt.hub.publish([slow_p.id, fast_p.id], {"type": "bulk", "n": i, "pad": pad})
        await fast.wait_for("bulk", count=i + 1)
    got = fast.of("bulk")
    assert [f["n"] for f in got] == list(range(frames))
    # The slow one is gone from the hub; once it reads again it finds the 1013 close after what was in flight.
    assert slow_p.uuid not in inst.rt.hub.by_user
    with pytest.raises(websockets.ConnectionClosed):
        while True:
            await asyncio.wait_for(slow.recv(), 10)
    assert slow.close_code == 1013


async def test_token_expiry_idle_timeout_and_refresh(cluster: Cluster) -> None:
    inst = await (await cluster.start(ws_heartbeat_interval=0.2, ws_idle_timeout=3)).serve()
    alice = cluster.person("alice")
    # A token that expires while connected closes the socket with 1008 at the next heartbeat...
    short = await inst.connect(alice, token=cluster.quark.user_token(alice.id, username="alice", ttl=1))
    assert await short.closed() == 1008
    assert short.closed_reason == "token expired"
    # ...unless the client refreshed it in time (same user only).
    fresh = await inst.connect(alice, token=cluster.quark.user_token(alice.id, username="alice", ttl=1))
    ack = await fresh.request({"type": "auth", "token": alice.token})
    assert ack["type"] == "ack"
    await fresh.wait_for("ping", count=8)  # heartbeats keep coming past the first token's expiry
    assert fresh.closed_code is None
    # A client that never sends a frame is closed after the idle timeout; answering pings keeps it open.
    await fresh.send({"type": "pong"})
    silent = await inst.connect(alice)
    assert await silent.closed() == 4000
    other = await inst.connect(alice)
    mallory = cluster.person("mallory")
    await other.send({"type": "auth", "token": mallory.token})  # another user's token: refused
    assert await other.closed() == 1008


async def test_heartbeat_round_is_sliced(cluster: Cluster) -> None:
    """One heartbeat round pings every connection exactly once and refreshes presence in slices of
    HEARTBEAT_SLICE, spread over the interval, so thousands of sockets never stall the loop at once."""
    import uuid

    from quark_messaging.realtime import Connection
    from quark_messaging.ws import HEARTBEAT_SLICE, heartbeat

    # The module's own heartbeat runs on the long interval it read at start; this round on a short one.
    inst = await cluster.start(ws_heartbeat_interval=600)
    rt = inst.rt
    rt.settings.ws_heartbeat_interval = 0.3
    conns = [Connection(user_id=uuid.uuid4(), queue_size=8) for _ in range(2 * HEARTBEAT_SLICE + 7)]
    for conn in conns:
        rt.hub.register(conn)
    marked: list[int] = []
    mark_online = rt.hub.mark_online

    async def recording(batch):  # type: ignore[no-untyped-def]
        marked.append(len(list(batch)))
        await mark_online(batch)

    rt.hub.mark_online = recording
    task = asyncio.create_task(heartbeat(inst.svc.ctx))
    try:
        async with asyncio.timeout(10):
            while sum(marked) < len(conns):
                await asyncio.sleep(0.02)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert marked[:3] == [HEARTBEAT_SLICE, HEARTBEAT_SLICE, 7]
    for conn in conns:
        frames = [json.loads(conn.queue.get_nowait()) for _ in range(conn.queue.qsize())]
        assert [f["type"] for f in frames] == ["ping"]
    for conn in conns:
        rt.hub.unregister(conn)  # not local any more: online() has to ask Valkey, where the beats wrote
    assert await rt.hub.online([c.user_id for c in conns]) == {c.user_id for c in conns}
