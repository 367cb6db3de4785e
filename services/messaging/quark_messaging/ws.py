"""The WebSocket endpoint `/api/v1/messages/ws`: authentication, origin check, frames, heartbeats, resume.

Protocol (JSON text frames, see docs/messaging.md):

* Authenticate with the `Sec-WebSocket-Protocol` header (`quark.v1, bearer.<token>`: the server
  answers `quark.v1`, never the token) or with a first frame `{"type": "auth", "token": "..."}`.
  A missing, invalid or expired token closes the socket with 1008 (policy violation). Tokens
  are never logged.
* A browser `Origin` not in `allowed_origins` is refused before the upgrade (HTTP 403, never 101).
* Client frames carry an optional `ref`, echoed in the `ack` / `error` answering them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from typing import Any

from fastapi import APIRouter, WebSocket
from pydantic import ValidationError
from starlette.websockets import WebSocketDisconnect, WebSocketState

from quark_messaging import accounts, messages, reads, sending
from quark_messaging.realtime import (
    CLOSE_GOING_AWAY,
    CLOSE_IDLE,
    CLOSE_POLICY,
    CLOSE_RATE_LIMITED,
    CLOSE_TOO_BIG,
    Connection,
    dumps,
)
from quark_messaging.runtime import MessagingRuntime
from quark_messaging.schemas import MessageCreate, MessageEdit, ReadMark
from quark_messaging.settings import MessagingSettings
from quark_sdk.app import ServiceContext
from quark_sdk.auth import USER_TOKEN_REQUIRED, Principal, authenticate_token, writing_user
from quark_sdk.errors import InvalidInput, QuarkError, RateLimited, Unauthenticated, is_unavailable_error

log = logging.getLogger("quark.messaging.ws")

router = APIRouter()
SUBPROTOCOL = "quark.v1"
TOKEN_PROTOCOL_PREFIX = "bearer."  # noqa: S105 - a subprotocol prefix, not a secret


def origin_allowed(origin: str | None, allowed: list[str]) -> bool:
    """Non-browser clients send no Origin; a browser's must be listed (or `*` allows any)."""
    if origin is None:
        return True
    return "*" in allowed or origin.rstrip("/") in {a.rstrip("/") for a in allowed}


def _protocols(ws: WebSocket) -> list[str]:
    raw = ws.headers.get("sec-websocket-protocol", "")
    return [p.strip() for p in raw.split(",") if p.strip()]


async def _principal(ws: WebSocket, token: str) -> Principal:
    """A user's token whose account still stands: the revocation list is asked in Valkey, not only in memory,
    so a socket opened the moment after a deletion or suspension is refused too."""
    principal = await authenticate_token(ws, token)
    if not principal.is_user:
        raise Unauthenticated(USER_TOKEN_REQUIRED)
    uuid.UUID(principal.subject)  # ValueError: not a user id
    revocations = ws.app.state.token_verifier.revocations
    if revocations is not None and await revocations.is_revoked_now(principal.subject, principal.issued_at):
        raise Unauthenticated("token revoked")
    return principal


# Frames that write (store something or reach other people): each one is a `WritingUser` write.
WRITE_FRAMES = frozenset({"send", "edit", "delete", "read", "typing"})


def _exp(principal: Principal) -> float | None:
    exp = principal.claims.get("exp")
    return float(exp) if isinstance(exp, int | float) else None


@router.websocket("/api/v1/messages/ws")
async def websocket_endpoint(ws: WebSocket) -> None:
    ctx: ServiceContext[MessagingSettings, MessagingRuntime] = ws.app.state.quark
    rt = ctx.runtime
    s = rt.settings
    if not origin_allowed(ws.headers.get("origin"), s.allowed_origins):
        await ws.close(code=CLOSE_POLICY)  # before accept: the server answers 403, never 101
        return
    protocols = _protocols(ws)
    token = next((p[len(TOKEN_PROTOCOL_PREFIX) :] for p in protocols if p.startswith(TOKEN_PROTOCOL_PREFIX)), None)
    await ws.accept(subprotocol=SUBPROTOCOL if SUBPROTOCOL in protocols else None)
    try:
        if token is None:
            token = await _first_frame_token(ws, s.ws_auth_timeout)
        principal = await _principal(ws, token)
    except (Unauthenticated, ValueError, TimeoutError, json.JSONDecodeError, KeyError, TypeError) as exc:
        reason = exc.detail if isinstance(exc, Unauthenticated) else "authentication required"
        await _close(ws, CLOSE_POLICY, reason)
        return
    except WebSocketDisconnect:
        return
    conn = Connection(user_id=uuid.UUID(principal.subject), queue_size=s.ws_send_queue, token_exp=_exp(principal))
    await _serve(ws, rt, conn, principal)


async def _first_frame_token(ws: WebSocket, timeout: float) -> str:
    raw = await asyncio.wait_for(ws.receive_text(), timeout)
    if len(raw) > 32 * 1024:
        raise ValueError("frame too large")
    frame = json.loads(raw)
    if not isinstance(frame, dict) or frame.get("type") != "auth" or not isinstance(frame.get("token"), str):
        raise ValueError("the first frame must be {type: auth, token}")
    return str(frame["token"])


async def _close(ws: WebSocket, code: int, reason: str, timeout: float = 2.0) -> None:
    """Send the close frame; a slow client's close waits behind what is already in flight, up to `timeout`."""
    if ws.application_state == WebSocketState.DISCONNECTED or ws.client_state == WebSocketState.DISCONNECTED:
        return
    with contextlib.suppress(Exception):
        await asyncio.wait_for(ws.close(code=code, reason=reason[:120]), timeout)


async def _serve(ws: WebSocket, rt: MessagingRuntime, conn: Connection, principal: Principal) -> None:
    hub = rt.hub
    hub.register(conn)
    try:
        await hub.mark_online([conn])
        await accounts.touch_user(rt, conn.user_id, principal.username)
    except Exception:  # presence and names are best effort: the connection still works
        log.warning("presence/name update failed for a new connection", exc_info=True)
    conn.put(
        dumps(
            {
                "type": "ready",
                "user_id": str(conn.user_id),
                "connection_id": conn.id,
                "heartbeat": rt.settings.ws_heartbeat_interval,
            }
        )
    )
    writer = asyncio.create_task(_writer(ws, conn), name="ws-writer")
    reader = asyncio.create_task(_reader(ws, rt, conn, principal), name="ws-reader")
    closing = asyncio.create_task(conn.closing.wait(), name="ws-closing")
    try:
        await asyncio.wait({writer, reader, closing}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        hub.unregister(conn)
        for task in (reader, closing):
            task.cancel()
        if not conn.closed:
            conn.close(1000, "")
        # Let the writer flush what is queued (e.g. an error frame) briefly, unless the client is too slow.
        if conn.close_code in (1000, CLOSE_POLICY, CLOSE_RATE_LIMITED, CLOSE_TOO_BIG, CLOSE_IDLE) and not writer.done():
            with contextlib.suppress(Exception, TimeoutError):
                await asyncio.wait_for(_drain(conn), 1)
        writer.cancel()
        await asyncio.gather(writer, reader, closing, return_exceptions=True)
        await _close(ws, conn.close_code, conn.close_reason, rt.settings.ws_close_timeout)
        with contextlib.suppress(Exception):
            await hub.mark_offline(conn)


async def _drain(conn: Connection) -> None:
    while not conn.queue.empty():
        await asyncio.sleep(0.005)


async def _writer(ws: WebSocket, conn: Connection) -> None:
    queue = conn.queue
    while True:
        text = await queue.get()
        await ws.send_text(text)


async def _reader(ws: WebSocket, rt: MessagingRuntime, conn: Connection, principal: Principal) -> None:
    s = rt.settings
    while not conn.closed:
        try:
            message = await asyncio.wait_for(ws.receive(), s.ws_idle_timeout)
        except TimeoutError:
            conn.close(CLOSE_IDLE, "idle timeout")
            return
        if message["type"] == "websocket.disconnect":
            conn.close(CLOSE_GOING_AWAY, "client went away")
            return
        conn.last_frame_at = time.monotonic()
        raw = message.get("text")
        if raw is None:
            conn.put(dumps({"type": "error", "status": 422, "code": "invalid-input", "detail": "frames are JSON text"}))
            continue
        if len(raw) > s.max_frame_bytes:
            conn.close(CLOSE_TOO_BIG, f"frame larger than {s.max_frame_bytes} bytes")
            return
        try:
            frame = json.loads(raw)
            if not isinstance(frame, dict) or not isinstance(frame.get("type"), str):
                raise InvalidInput("a frame is a JSON object with a string 'type'", field="type")
            principal = await _handle(ws, rt, conn, principal, frame)
        except RateLimited as exc:
            conn.close(CLOSE_RATE_LIMITED, f"rate limited: retry after {exc.retry_after}s")
            return
        except Unauthenticated as exc:
            conn.close(CLOSE_POLICY, exc.detail)
            return
        except QuarkError as exc:
            conn.put(
                dumps(
                    {
                        "type": "error",
                        "ref": _ref(frame_or_none(raw)),
                        "status": exc.status,
                        "code": exc.code,
                        "detail": exc.detail,
                    }
                )
            )
        except (json.JSONDecodeError, ValidationError, ValueError) as exc:
            detail = "invalid frame" if isinstance(exc, json.JSONDecodeError) else _validation_detail(exc)
            conn.put(
                dumps(
                    {
                        "type": "error",
                        "ref": _ref(frame_or_none(raw)),
                        "status": 422,
                        "code": "invalid-input",
                        "detail": detail,
                    }
                )
            )
        except Exception as exc:  # a failure serving one frame must not kill the connection
            unavailable = is_unavailable_error(exc)
            if unavailable:
                log.warning("WebSocket frame refused, a backing server is unavailable: %r", exc)
            else:
                kind = (frame_or_none(raw) or {}).get("type")
                log.exception("WebSocket frame of type %r failed", str(kind)[:40])  # never the frame: tokens
            conn.put(
                dumps(
                    {
                        "type": "error",
                        "ref": _ref(frame_or_none(raw)),
                        "status": 503 if unavailable else 500,
                        "code": "unavailable" if unavailable else "internal-error",
                        "detail": "temporarily unavailable, retry" if unavailable else "internal error",
                    }
                )
            )


def frame_or_none(raw: str) -> dict[str, Any] | None:
    with contextlib.suppress(Exception):
        value = json.loads(raw)
        if isinstance(value, dict):
            return value
    return None


def _ref(frame: dict[str, Any] | None) -> Any:
    ref = frame.get("ref") if frame else None
    return ref if isinstance(ref, str | int) and len(str(ref)) <= 64 else None


def _validation_detail(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        err = exc.errors()[0]
        return f"{'.'.join(str(x) for x in err['loc'])}: {err['msg']}"
    return "invalid value"


def _uuid(frame: dict[str, Any], key: str = "conversation_id") -> uuid.UUID:
    value = frame.get(key)
    try:
        return uuid.UUID(str(value))
    except ValueError:
        raise InvalidInput(f"{key} must be a UUID", field=key) from None


def _int(frame: dict[str, Any], key: str) -> int:
    value = frame.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or not 0 < value < 2**63:
        raise InvalidInput(f"{key} must be a positive integer", field=key)
    return value


async def _handle(
    ws: WebSocket, rt: MessagingRuntime, conn: Connection, principal: Principal, frame: dict[str, Any]
) -> Principal:
    """Apply one client frame; returns the (possibly refreshed) principal."""
    kind, ref = frame["type"], _ref(frame)
    uid = conn.user_id
    db = rt.db()
    if kind in WRITE_FRAMES:
        # As every REST write: a deleted or suspended account (asked in Valkey: 1008 "token revoked") and,
        # under the station's policy, an unverified one (an error frame, 403) write nothing.
        await writing_user(ws, principal)
    if kind == "ping":
        conn.put(dumps({"type": "pong", "ref": ref, "t": frame.get("t")}))
    elif kind == "pong":  # the answer to the server's ping: only keeps the connection under the idle timeout
        pass
    elif kind == "auth":  # a fresh token before the old one expires
        token = frame.get("token")
        if not isinstance(token, str):
            raise Unauthenticated("token required")
        fresh = await _principal(ws, token)
        if fresh.subject != principal.subject:
            raise Unauthenticated("a refreshed token must be for the same user")
        conn.token_exp = _exp(fresh)
        conn.put(dumps({"type": "ack", "ref": ref}))
        return fresh
    elif kind == "send":
        body = MessageCreate.model_validate(
            {k: frame[k] for k in ("body", "reply_to", "attachments", "client_msg_id") if k in frame}
        )
        result = await sending.send_message(
            rt,
            uid,
            _uuid(frame),
            body.body,
            reply_to=body.reply_to,
            attachments=body.attachments,
            client_msg_id=body.client_msg_id,
        )
        m = result.message
        conn.put(
            dumps(
                {
                    "type": "ack",
                    "ref": ref,
                    "client_msg_id": m.client_msg_id,
                    "message_id": m.id,
                    "conversation_id": str(m.conversation_id),
                    "seq": m.seq,
                    "duplicate": result.duplicate,
                }
            )
        )
    elif kind == "edit":
        edit = MessageEdit.model_validate({"body": frame.get("body")})
        async with db.session() as session:
            out = await messages.edit_message(rt, session, uid, _int(frame, "message_id"), edit.body)
        conn.put(dumps({"type": "ack", "ref": ref, "message_id": out.id}))
    elif kind == "delete":
        message_id = _int(frame, "message_id")
        async with db.session() as session:
            await messages.delete_message(rt, session, uid, message_id)
        conn.put(dumps({"type": "ack", "ref": ref, "message_id": message_id}))
    elif kind == "read":
        mark = ReadMark.model_validate({"seq": frame.get("seq")})
        async with db.session() as session:
            seq = await reads.mark_read(rt, session, uid, _uuid(frame), mark.seq)
        conn.put(dumps({"type": "ack", "ref": ref, "last_read_seq": seq}))
    elif kind == "typing":
        async with db.session() as session:
            await messages.typing(rt, session, uid, _uuid(frame))
    elif kind == "resume":
        await _resume(rt, conn, frame)
    else:
        raise InvalidInput(f"unknown frame type {kind[:40]!r}", field="type")
    return principal


async def _resume(rt: MessagingRuntime, conn: Connection, frame: dict[str, Any]) -> None:
    """Replay what the client missed; live frames arriving meanwhile wait and are de-duplicated."""
    after_raw = frame.get("after", {})
    if not isinstance(after_raw, dict) or len(after_raw) > 10_000:
        raise InvalidInput("after maps conversation ids to the last seq seen", field="after")
    after: dict[uuid.UUID, int] = {}
    for key, value in after_raw.items():
        try:
            cid = uuid.UUID(str(key))
        except ValueError:
            raise InvalidInput("after maps conversation ids to the last seq seen", field="after") from None
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 2**63:
            raise InvalidInput("after maps conversation ids to the last seq seen", field="after")
        after[cid] = value
    conn.begin_resume()
    try:
        async with rt.db().session() as session:
            batches = await reads.resume(session, conn.user_id, after, limit=rt.settings.resume_limit)
        count = 0
        for cid, seen in after.items():
            conv_key = str(cid)
            conn.floor[conv_key] = max(conn.floor.get(conv_key, 0), seen)
        for batch in batches:
            conv_key = str(batch.conversation_id)
            if batch.messages:
                conn.floor[conv_key] = max(conn.floor.get(conv_key, 0), batch.messages[-1].seq)
            for m in batch.messages:
                if conn.already_sent(conv_key, m.seq):
                    continue
                await conn.send_replay(
                    dumps({"type": "message", "message": m.model_dump(mode="json"), "replay": True}), conv_key, m.seq
                )
                count += 1
            if batch.truncated:
                last = batch.messages[-1].seq if batch.messages else 0
                await conn.send_replay(
                    dumps(
                        {
                            "type": "resume.truncated",
                            "conversation_id": conv_key,
                            "after": last,
                            "last_seq": batch.last_seq,
                        }
                    ),
                    conv_key,
                    -1,
                )
    finally:
        conn.end_resume()
    conn.put(dumps({"type": "resume.done", "ref": _ref(frame), "replayed": count}))


# Connections per heartbeat slice. A round over every connection at once (a ping frame each, then one
# presence pipeline) held the event loop for tens of milliseconds at 1,000 connections every interval —
# the largest part of the DM latency tail in bench/messaging.py. Slices are spread over the interval.
HEARTBEAT_SLICE = 50


async def heartbeat(ctx: ServiceContext[MessagingSettings, MessagingRuntime]) -> None:
    """Background job: ping every connection, refresh presence, close expired tokens — once per
    interval for each connection, in slices spread evenly over the interval."""
    rt = ctx.runtime
    interval = rt.settings.ws_heartbeat_interval
    loop = asyncio.get_running_loop()
    while True:
        started = loop.time()
        conns = list(rt.hub.connections())
        slices = max(1, -(-len(conns) // HEARTBEAT_SLICE))
        for i in range(slices):
            await asyncio.sleep(max(0.0, started + interval * (i + 1) / slices - loop.time()))
            await _beat(rt, conns[i * HEARTBEAT_SLICE : (i + 1) * HEARTBEAT_SLICE])


async def _beat(rt: MessagingRuntime, conns: list[Connection]) -> None:
    now = time.time()
    live = []
    for conn in conns:
        if conn.closed:
            continue
        if conn.token_exp is not None and conn.token_exp < now:
            conn.close(CLOSE_POLICY, "token expired")
            continue
        conn.deliver(dumps({"type": "ping", "t": round(now, 3)}))
        live.append(conn)
    if live:
        with contextlib.suppress(Exception):
            await rt.hub.mark_online(live)
