"""The messenger against the real auth, user and messaging modules, served on a real port (WebSockets):
the one-time socket ticket (single use, expires, bound to its session, same-site only), the web module's
socket proxy relaying live frames between two people, the chat pages (direct and group, history paging,
HTMX sending, edits, deletes), notifications and the unread badges."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import uvicorn
import websockets
from webkit import Browser, Station, sign_up, start_station, wait_profile

from quark_sdk.embedded import free_port
from quark_sdk.testing import QuarkTestEnv, eventually
from quark_web.sessions import digest
from quark_web.socket import Tickets


@dataclass
class Live:
    station: Station
    port: int
    server: uvicorn.Server
    sockets: list[Any] = field(default_factory=list)

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def ticket(self, b: Browser) -> str:
        resp = await b.http.post("/messages/ticket", headers={"X-CSRF-Token": b.csrf})
        assert resp.status_code == 200, resp.text
        assert resp.headers["cache-control"] == "no-store"
        body = resp.json()
        assert body["url"] == "/messages/socket" and body["protocol"] == "quark.web"
        return str(body["ticket"])

    async def connect(self, b: Browser, ticket: str, *, origin: str | None = None) -> Socket:
        cookie = "; ".join(f"{k}={v}" for k, v in b.http.cookies.items())
        ws = await websockets.connect(f"ws://127.0.0.1:{self.port}/messages/socket",
                                      subprotocols=["quark.web", f"ticket.{ticket}"],  # type: ignore[list-item]
                                      additional_headers={"Cookie": cookie, "Origin": origin or self.origin},
                                      open_timeout=10)
        assert ws.subprotocol == "quark.web"
        sock = Socket(ws)
        sock.task = asyncio.create_task(sock.read())
        self.sockets.append(sock)
        await sock.wait_for("ready")
        return sock


@dataclass
class Socket:
    ws: Any
    frames: list[dict[str, Any]] = field(default_factory=list)
    task: asyncio.Task[None] | None = None

    async def read(self) -> None:
        with contextlib.suppress(websockets.ConnectionClosed):
            async for raw in self.ws:
                self.frames.append(json.loads(raw))

    async def send(self, frame: dict[str, Any]) -> None:
        await self.ws.send(json.dumps(frame))

    async def wait_for(self, kind: str, pred: Any = None) -> dict[str, Any]:
        def probe() -> dict[str, Any] | None:
            return next((f for f in self.frames if f.get("type") == kind and (pred is None or pred(f))), None)

        found: dict[str, Any] = await eventually(probe, timeout=20, what=f"a {kind} frame")
        return found

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.ws.close()
        if self.task is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.task, 5)


@pytest.fixture
async def live(quark: QuarkTestEnv, tmp_path: Path) -> AsyncIterator[Live]:
    port = free_port()
    station = await start_station(quark, tmp_path, with_media=False, with_messaging=True, web_settings={
        "messaging_ws_url": f"ws://127.0.0.1:{port}/api/v1/messages/ws"})
    server = uvicorn.Server(uvicorn.Config(station.gateway, host="127.0.0.1", port=port, lifespan="off",
                                           log_level="warning", ws_ping_interval=None))
    task = asyncio.create_task(server.serve())
    await eventually(lambda: server.started, what="uvicorn started")
    lv = Live(station, port, server)
    try:
        yield lv
    finally:
        for s in lv.sockets:
            await s.close()
        server.should_exit = True
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, 10)
        await station.close()


async def people(live: Live, *names: str) -> list[Browser]:
    out = []
    for name in names:
        b = live.station.browser()
        await sign_up(live.station, b, name)
        await wait_profile(live.station, name)
        out.append(b)
    return out


async def open_direct(b: Browser, username: str) -> str:
    await b.get("/messages")
    resp = await b.post("/messages/new", {"username": username})
    assert resp.status_code == 303, resp.text
    m = re.fullmatch(r"/messages/([0-9a-f-]{36})", resp.headers["location"])
    assert m is not None
    return m.group(1)


async def refused(live: Live, b: Browser, ticket: str, **kw: Any) -> bool:
    try:
        await live.connect(b, ticket, **kw)
    except websockets.InvalidStatus as exc:
        return exc.response.status_code == 403
    return False


async def test_the_ticket_is_single_use_bound_to_its_session_and_expires(live: Live) -> None:
    alice, bob = await people(live, "alice", "bob")
    ticket = await live.ticket(alice)
    stored = await live.station.web.redis.get(live.station.web.ctx.key("ws-ticket", digest(ticket)))
    assert stored is not None and ticket.encode() not in stored  # Valkey holds digests only
    sock = await live.connect(alice, ticket)
    assert (await sock.wait_for("ready"))["user_id"]
    assert await refused(live, alice, ticket)  # used once: gone
    # Another browser's ticket does not open a socket for this one (and is spent by the attempt).
    bobs = await live.ticket(bob)
    assert await refused(live, alice, bobs)
    assert await refused(live, bob, bobs)
    # A cross-site page cannot use a ticket either.
    assert await refused(live, alice, await live.ticket(alice), origin="https://evil.example")
    # A ticket nobody redeems expires on its own.
    tickets = Tickets(live.station.web)
    sid = str(alice.http.cookies.get("quark_session"))
    late = await tickets.issue(sid, ttl=1)

    async def expired() -> bool:
        return not await live.station.web.redis.exists(live.station.web.ctx.key("ws-ticket", digest(late)))

    await eventually(expired, timeout=10, what="the ticket to expire")
    assert await refused(live, alice, late)
    assert await refused(live, alice, "")
    # Without a session no ticket at all.
    anon = live.station.browser()
    await anon.get("/login")
    assert (await anon.http.post("/messages/ticket", headers={"X-CSRF-Token": anon.csrf})).status_code == 401


async def test_the_proxy_relays_messages_live_between_two_people(live: Live) -> None:
    alice, bob = await people(live, "alice", "bob")
    chat_id = await open_direct(alice, "bob")
    a = await live.connect(alice, await live.ticket(alice))
    b = await live.connect(bob, await live.ticket(bob))
    # Alice sends with the page's HTMX form; Bob's socket gets it at once.
    page = await alice.get(f"/messages/{chat_id}")
    assert page.status_code == 200 and 'id="compose"' in page.text
    sent = await alice.htmx(f"/messages/{chat_id}/send", {"body": "Hello <Bob>"})
    assert sent.status_code == 200 and "Hello &lt;Bob&gt;" in sent.text
    message_id = int(sent.headers["X-Message-Id"])
    got = await b.wait_for("message", lambda f: f["message"]["id"] == message_id)
    assert got["message"]["body"] == "Hello <Bob>" and got["message"]["conversation_id"] == chat_id
    # Bob reads it, types and answers through the socket (the proxy forwards his frames).
    await b.send({"type": "read", "conversation_id": chat_id, "seq": got["message"]["seq"]})
    receipt = await a.wait_for("read")
    assert receipt["seq"] == got["message"]["seq"] and receipt["conversation_id"] == chat_id
    await b.send({"type": "typing", "conversation_id": chat_id})
    assert (await a.wait_for("typing"))["conversation_id"] == chat_id
    await b.send({"type": "send", "conversation_id": chat_id, "body": "Hi Alice", "ref": "r1"})
    ack = await b.wait_for("ack", lambda f: f.get("ref") == "r1")
    reply = await a.wait_for("message", lambda f: f["message"]["body"] == "Hi Alice")
    assert reply["message"]["id"] == ack["message_id"]
    # Alice edits and deletes her message with the page's forms; Bob sees both live.
    edited = await alice.htmx(f"/messages/{chat_id}/m/{message_id}/edit", {"body": "Hello, Bob"})
    assert edited.status_code == 200 and "Hello, Bob" in edited.text and "edited" in edited.text
    assert (await b.wait_for("message.updated"))["message"]["body"] == "Hello, Bob"
    deleted = await alice.htmx(f"/messages/{chat_id}/m/{message_id}/delete")
    assert deleted.status_code == 200 and "Message deleted" in deleted.text
    assert (await b.wait_for("message.deleted"))["message_id"] == message_id
    # The browser cannot hand the messaging socket a token of its own; unknown frames are refused locally.
    await b.send({"type": "auth", "token": "forged"})
    assert (await b.wait_for("error"))["detail"] == "unknown frame"
    await b.send({"type": "ping", "ref": "p"})
    assert (await b.wait_for("pong"))["ref"] == "p"  # and the socket still works


async def test_chat_pages_history_groups_notifications_and_badges(live: Live) -> None:
    alice, bob, carol = await people(live, "alice", "bob", "carol")
    chat_id = await open_direct(alice, "bob")
    assert await open_direct(bob, "alice") == chat_id  # the pair's one conversation
    for i in range(35):
        await alice.htmx(f"/messages/{chat_id}/send", {"body": f"message {i}"})
    # Bob's list: the chat with 35 unread, named after Alice; his badge counts them.
    listing = await bob.get("/messages")
    assert "@alice" in listing.text and 'data-unread="35"' in listing.text
    badges = await bob.get("/badges")
    assert re.search(r'id="badge-messages"[^>]*data-count="35"', badges.text)
    # The chat: the latest 30, an 'older' link to the rest (messaging's before cursor); opening reads it.
    page = await bob.get(f"/messages/{chat_id}")
    shown = re.findall(r'<p class="body">message (\d+)</p>', page.text)
    assert shown == [str(i) for i in range(5, 35)]
    older = re.search(r'hx-get="(/messages/[^"]+/older\?before=\d+)"', page.text)
    assert older is not None
    rest = await bob.http.get(older.group(1), headers={"HX-Request": "true"})
    assert re.findall(r'<p class="body">message (\d+)</p>', rest.text) == [str(i) for i in range(5)]
    assert 'id="older"' not in rest.text
    assert 'data-count="0"' in (await bob.get("/badges")).text
    # Without JavaScript the form posts and comes back to the chat.
    plain = await bob.post(f"/messages/{chat_id}/send", {"body": "plain form"})
    assert plain.status_code == 303 and plain.headers["location"] == f"/messages/{chat_id}"
    empty = await bob.htmx(f"/messages/{chat_id}/send", {"body": "   "})
    assert empty.status_code == 422 and empty.headers["HX-Retarget"] == "#flash"
    # A group with two members, named by its title.
    await alice.get("/messages")
    made = await alice.post("/messages/new", {"title": "Tea party", "members": "bob, @carol"})
    assert made.status_code == 303
    group = await carol.get(made.headers["location"])
    assert "Tea party" in group.text and "@alice" in group.text and "@bob" in group.text
    unknown = await alice.post("/messages/new", {"username": "nobody"})
    assert unknown.status_code == 404 and "could not find anyone" in unknown.text

    # Notifications: Carol follows Alice; Alice sees it, the badge counts it, opening goes to Carol.
    await carol.get("/people/alice")
    await carol.post("/people/alice/follow")

    async def noted() -> str | None:
        text = (await alice.get("/notifications")).text
        return text if "@carol started following you" in text else None

    text = await eventually(noted, timeout=20, what="the follow notification")
    assert re.search(r'id="badge-notes"[^>]*data-count="[1-9]', (await alice.get("/badges")).text)
    note = re.search(r'action="/notifications/(\d+)/open"', text)
    assert note is not None
    opened = await alice.post(f"/notifications/{note.group(1)}/open")
    assert opened.status_code == 303 and opened.headers["location"] == "/people/carol"
    assert (await alice.post("/notifications/read-all")).status_code == 303
    assert 'id="badge-notes"' in (await alice.get("/badges")).text
    assert re.search(r'id="badge-notes"[^>]*data-count="0"', (await alice.get("/badges")).text)


async def test_messenger_pages_need_a_session(live: Live) -> None:
    anon = live.station.browser()
    for path in ("/messages", "/notifications", "/messages/00000000-0000-0000-0000-000000000000"):
        resp = await anon.get(path)
        assert resp.status_code == 303 and resp.headers["location"].startswith("/login?next="), path
    assert (await anon.get("/badges")).status_code == 204
