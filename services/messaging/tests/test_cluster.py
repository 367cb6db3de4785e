"""Two messaging instances sharing a database, NATS and Redis (as in fleet mode), each with its own clients.

Both instances are full modules (lifespan, relay, consumers, hub) served by uvicorn on their own ports
in this process; what they share is exactly what two fleet processes share.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from typing import Any

from messaging_testkit import Client, Cluster, direct, group, send


async def test_cross_instance_delivery(cluster: Cluster) -> None:
    a = await (await cluster.start()).serve()
    b = await (await cluster.start()).serve()
    alice, bob, carol = await cluster.people("alice", "bob", "carol")
    dm = await direct(a, alice, bob)
    team = await group(b, carol, alice, bob)
    alice_ws = await a.connect(alice)
    bob_ws = await b.connect(bob)
    carol_ws = await a.connect(carol)
    # WebSocket send on A reaches bob on B; REST send on B reaches alice on A.
    ack = await alice_ws.request({"type": "send", "conversation_id": dm, "body": "from A"})
    assert ack["type"] == "ack"
    got = await bob_ws.wait_for("message", lambda f: f["message"]["body"] == "from A")
    assert got[0]["message"]["id"] == ack["message_id"]
    await send(b, bob, dm, "from B")
    await alice_ws.wait_for("message", lambda f: f["message"]["body"] == "from B")
    # A group message fans out to members on both instances, the sender's own connection included.
    await send(b, carol, team, "to the team")
    for ws in (alice_ws, bob_ws, carol_ws):
        await ws.wait_for("message", lambda f: f["message"]["body"] == "to the team")
    # Typing on B shows on A; carol (not in the DM) never sees the DM.
    await bob_ws.send({"type": "typing", "conversation_id": dm})
    await alice_ws.wait_for("typing", lambda f: f["conversation_id"] == dm)
    assert not [f for f in carol_ws.of("message") if f["message"]["conversation_id"] == dm]
    assert not [f for f in carol_ws.of("typing") if f["conversation_id"] == dm]
    # A notification is pushed to alice's connection on A whichever instance consumed the event.
    await cluster.emit(
        "quark.user.followed",
        {
            "follower_id": carol.id,
            "follower_username": "carol",
            "followee_id": alice.id,
            "followee_username": "alice",
            "at": "2026-01-01T00:00:00Z",
        },
    )
    note = await alice_ws.wait_for("notification")
    assert note[0]["notification"]["kind"] == "follow" and note[0]["notification"]["actor_id"] == carol.id


def contiguous(seqs: set[int]) -> int:
    """The client's resume point: the highest seq such that every earlier one arrived."""
    n = 0
    while n + 1 in seqs:
        n += 1
    return n


async def test_reconnect_resume_without_gaps_or_duplicates(cluster: Cluster) -> None:
    a = await (await cluster.start()).serve()
    b = await (await cluster.start()).serve()
    alice, bob, carol = await cluster.people("alice", "bob", "carol")
    dm = await direct(a, alice, bob)
    team = await group(a, alice, bob, carol)
    total = 60
    sent: Counter[str] = Counter()
    half = asyncio.Event()

    async def sender(inst: Any, who: Any, chat: str, n: int) -> None:
        for i in range(n):
            await send(inst, who, chat, f"{who.username} {i}")
            sent[chat] += 1
            if sum(sent.values()) >= total // 2:
                half.set()

    # Three senders on two instances, two of them into the same group (their live frames may interleave).
    senders = [
        asyncio.create_task(sender(a, alice, dm, total // 3)),
        asyncio.create_task(sender(b, alice, team, total // 3)),
        asyncio.create_task(sender(a, carol, team, total // 3)),
    ]
    first = await b.connect(bob)
    await half.wait()
    await first.close()
    seen: dict[str, set[int]] = {dm: set(), team: set()}
    for f in first.of("message"):
        seen[f["message"]["conversation_id"]].add(f["message"]["seq"])
    after = {chat: contiguous(seqs) for chat, seqs in seen.items()}

    # Reconnect to the other instance while the senders go on, and resume from the last seqs seen.
    second = await a.connect(bob)
    done = await second.request({"type": "resume", "after": after})
    assert done["type"] == "resume.done"
    await asyncio.gather(*senders)
    counts = {dm: sent[dm], team: sent[team]}

    def complete() -> bool:
        got = {
            chat: {f["message"]["seq"] for f in second.of("message") if f["message"]["conversation_id"] == chat}
            for chat in counts
        }
        return all(got[chat] >= set(range(after[chat] + 1, counts[chat] + 1)) for chat in counts)

    from quark_sdk.testing import eventually

    await eventually(complete, what="every message after the resume point")
    for chat in counts:
        frames = [f["message"]["seq"] for f in second.of("message") if f["message"]["conversation_id"] == chat]
        dup = [s for s, n in Counter(frames).items() if n > 1]
        assert not dup, f"duplicates in {chat}: {dup}"
        assert set(frames) == set(range(after[chat] + 1, counts[chat] + 1)), chat
        assert after[chat] < counts[chat]  # the resume really had something to replay


async def test_resume_of_unknown_conversation_starts_at_read_marker(cluster: Cluster) -> None:
    inst = await (await cluster.start()).serve()
    alice, bob = await cluster.people("alice", "bob")
    dm = await direct(inst, alice, bob)
    for i in range(3):
        await send(inst, alice, dm, f"m{i}")
    await inst.client.post(f"/api/v1/chats/{dm}/read", json={"seq": 1}, headers=bob.headers)
    ws = await inst.connect(bob)
    done = await ws.request({"type": "resume"})
    assert done["replayed"] == 2
    # Replayed frames only: a live frame of the last send may still reach the new socket (clients de-dup by seq).
    assert [f["message"]["seq"] for f in ws.of("message") if f.get("replay")] == [2, 3]


async def test_resume_truncates_long_gaps(cluster: Cluster) -> None:
    inst = await (await cluster.start(resume_limit=3)).serve()
    alice, bob = await cluster.people("alice", "bob")
    dm = await direct(inst, alice, bob)
    for i in range(5):
        await send(inst, alice, dm, f"m{i}")
    ws: Client = await inst.connect(bob)
    await ws.request({"type": "resume", "after": {dm: 0}})
    # Replayed frames only: a live frame of the last send may still reach the new socket (clients de-dup by seq).
    assert [f["message"]["seq"] for f in ws.of("message") if f.get("replay")] == [1, 2, 3]
    truncated = ws.of("resume.truncated")[0]
    assert truncated["after"] == 3 and truncated["last_seq"] == 5
    with contextlib.suppress(Exception):
        await ws.close()
