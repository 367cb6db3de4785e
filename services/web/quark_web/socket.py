"""The messenger's live socket without a token in the browser: one-time tickets and a WebSocket proxy.

The page's JavaScript never holds the person's access token. It asks `POST /messages/ticket` (CSRF
checked, signed-in) for a **ticket**: 32 random bytes, kept in Valkey under its SHA-256 for
`TICKET_TTL` seconds and bound to the browser session that asked (the session id's digest). It then
opens `/messages/socket` offering the subprotocols `quark.web` and `ticket.<ticket>`. The web module
redeems the ticket (GETDEL: single use, whoever comes second finds nothing), checks that the socket
carries the same session cookie and a same-site `Origin`, and only then opens the messaging module's
WebSocket (`/api/v1/messages/ws`) itself with the person's token (`bearer.<token>` subprotocol), and
relays text frames both ways. Before the access token expires it refreshes the session and sends the
messaging socket an `auth` frame with the new token (answered to the web module, never relayed); a
session signed out meanwhile closes the socket with 1008.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import secrets
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import websockets
from fastapi import APIRouter, WebSocket
from starlette.websockets import WebSocketDisconnect, WebSocketState
from websockets.typing import Subprotocol

from quark_web.sessions import digest

if TYPE_CHECKING:
    from quark_web.runtime import WebRuntime

log = logging.getLogger("quark.web.socket")

router = APIRouter(include_in_schema=False)
SOCKET_PATH = "/messages/socket"
SUBPROTOCOL = "quark.web"
TICKET_PREFIX = "ticket."
TICKET_TTL = 30
# What the browser may send on (messaging's client frames, minus `auth`: tokens are the web module's).
CLIENT_FRAMES = frozenset({"send", "edit", "delete", "read", "typing", "resume", "ping", "pong"})
MAX_FRAME = 64 * 1024
AUTH_REF = "web-auth"
CLOSE_POLICY = 1008
CLOSE_UNAVAILABLE = 1013


class Tickets:
    """Single-use socket tickets in Valkey, bound to one browser session."""

    def __init__(self, rt: WebRuntime) -> None:
        self.rt = rt

    def _key(self, ticket: str) -> str:
        return self.rt.ctx.key("ws-ticket", digest(ticket))

    async def issue(self, sid: str, ttl: int = TICKET_TTL) -> str:
        ticket = secrets.token_urlsafe(32)
        await self.rt.redis.set(self._key(ticket), digest(sid), ex=ttl)
        return ticket

    async def redeem(self, ticket: str, sid: str | None) -> bool:
        """True once for a live ticket presented with the session that asked for it (it is gone afterwards)."""
        if not ticket or len(ticket) > 100:
            return False
        stored = await self.rt.redis.getdel(self._key(ticket))
        if stored is None or sid is None:
            return False
        value = stored.decode() if isinstance(stored, bytes) else str(stored)
        return hmac.compare_digest(value, digest(sid))


def _protocols(ws: WebSocket) -> list[str]:
    return [p.strip() for p in ws.headers.get("sec-websocket-protocol", "").split(",") if p.strip()]


def _same_site(ws: WebSocket) -> bool:
    """A browser always sends Origin on a WebSocket: it must be this host (no cross-site socket hijacking)."""
    origin = ws.headers.get("origin")
    return origin is None or urlsplit(origin).netloc == ws.headers.get("host", "")


@router.websocket(SOCKET_PATH)
async def socket(ws: WebSocket) -> None:
    rt: WebRuntime = ws.app.state.quark.runtime
    ticket = next((p[len(TICKET_PREFIX):] for p in _protocols(ws) if p.startswith(TICKET_PREFIX)), "")
    sid = ws.cookies.get(rt.settings.cookie_name)
    if not _same_site(ws) or not await Tickets(rt).redeem(ticket, sid):
        await ws.close(code=CLOSE_POLICY)  # before accept: the upgrade is refused (HTTP 403)
        return
    assert sid is not None
    sess = await rt.sessions.load(sid)
    sess = await rt.sessions.fresh(sid, sess) if sess is not None else None
    if sess is None:
        await ws.close(code=CLOSE_POLICY)
        return
    try:
        upstream = await websockets.connect(
            rt.settings.messaging_ws(), open_timeout=10, max_size=MAX_FRAME * 4,
            subprotocols=[Subprotocol("quark.v1"), Subprotocol("bearer." + sess.access_token)],
            user_agent_header="quark-web/0.1")
    except (OSError, TimeoutError, websockets.InvalidHandshake) as exc:
        log.warning("messaging socket unreachable: %s", type(exc).__name__)
        await ws.accept(subprotocol=SUBPROTOCOL)
        await ws.close(code=CLOSE_UNAVAILABLE, reason="messaging is not available")
        return
    await ws.accept(subprotocol=SUBPROTOCOL)
    await _relay(rt, ws, upstream, sid, sess.access_exp)


async def _relay(rt: WebRuntime, ws: WebSocket, upstream: Any, sid: str, access_exp: float) -> None:
    close: list[tuple[int, str]] = []

    async def down() -> None:
        try:
            async for raw in upstream:
                if isinstance(raw, bytes):
                    continue
                if AUTH_REF in raw and _is_auth_answer(raw):
                    continue  # the answer to our own token refresh
                await ws.send_text(raw)
        except websockets.ConnectionClosed:
            pass
        rcvd = upstream.close_code
        close.append((rcvd if rcvd and rcvd not in (1005, 1006) else 1012, upstream.close_reason or ""))

    async def up() -> None:
        while True:
            try:
                raw = await ws.receive_text()
            except (WebSocketDisconnect, RuntimeError, KeyError):
                close.append((1000, ""))
                return
            if len(raw) > MAX_FRAME:
                close.append((1009, "frame too large"))
                return
            try:
                frame = json.loads(raw)
            except ValueError:
                frame = None
            if not isinstance(frame, dict) or frame.get("type") not in CLIENT_FRAMES:
                await ws.send_text(json.dumps({"type": "error", "status": 422, "code": "invalid-input",
                                               "detail": "unknown frame", "ref": None}))
                continue
            await upstream.send(raw)

    async def refresh(exp: float) -> None:
        """Keep the messaging socket's token fresh; a session that cannot be refreshed ends the socket."""
        while True:
            await asyncio.sleep(max(1.0, exp - time.time() - rt.settings.refresh_margin))
            sess = await rt.sessions.load(sid)
            sess = await rt.sessions.fresh(sid, sess) if sess is not None else None
            if sess is None:
                close.append((CLOSE_POLICY, "signed out"))
                return
            if sess.access_exp > exp:
                await upstream.send(json.dumps({"type": "auth", "token": sess.access_token, "ref": AUTH_REF}))
                exp = sess.access_exp

    tasks = [asyncio.create_task(down()), asyncio.create_task(up()), asyncio.create_task(refresh(access_exp))]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(upstream.close(), 2)
        code, reason = close[0] if close else (1000, "")
        if ws.application_state != WebSocketState.DISCONNECTED and ws.client_state != WebSocketState.DISCONNECTED:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(ws.close(code=code, reason=reason[:120]), 2)


def _is_auth_answer(raw: str) -> bool:
    with contextlib.suppress(ValueError):
        frame = json.loads(raw)
        return isinstance(frame, dict) and frame.get("ref") == AUTH_REF and frame.get("type") in ("ack", "error")
    return False
