"""Sending: idempotent sends in one statement, grouped into shared transactions by the runtime's `SendBatcher`.

`send_message` is what the REST route and the WebSocket call; the batcher (built and started with
the runtime, stopped on shutdown) is the one writer of sends.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import and_, func, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from quark_messaging.common import (
    MAX_MENTIONS,
    MENTION,
    check_body,
    load_conversation,
    message_out,
    now,
    posting_refusal,
)
from quark_messaging.models import Member, Message, User
from quark_messaging.notifications import create_notification
from quark_messaging.schemas import (
    MessageOut,
    MessageSent,
)
from quark_sdk.db import Database
from quark_sdk.errors import (
    Conflict,
    InvalidInput,
    NotFound,
    QuarkError,
    RateLimited,
    ServiceUnavailable,
)
from quark_sdk.outbox import OutboxBatch

if TYPE_CHECKING:
    from quark_messaging.runtime import MessagingRuntime


@dataclass
class SendResult:
    message: MessageOut
    duplicate: bool


async def send_message(
    rt: MessagingRuntime,
    user_id: uuid.UUID,
    conversation_id: uuid.UUID,
    body: str,
    *,
    reply_to: int | None = None,
    attachments: list[str] | None = None,
    client_msg_id: str | None = None,
) -> SendResult:
    """Store a message through the runtime's writer and deliver it live. A resend with the same
    `client_msg_id` returns the first one, is never refused by the rate limit and does not count against it.

    The request does only what the sender waits for: the write (one shared transaction) and the live
    delivery. Notifications for members who are offline are the `notify` consumer's work, from the
    quark.message.sent event the write committed (`notify_offline_members`)."""
    attachments = list(dict.fromkeys(attachments or []))
    check_body(rt.settings, body, attachments)
    try:
        counted = await rt.limiter.check(
            f"msg:{user_id}",
            limit=rt.settings.message_rate_limit,
            window=rt.settings.message_rate_window,
            detail=f"at most {rt.settings.message_rate_limit} messages per {rt.settings.message_rate_window:g}s",
        )
    except RateLimited:
        # Over the limit, a resend of a stored message still gets its message back (the only read a
        # new message does not pay: the writer's transaction finds resends itself).
        if client_msg_id is not None and (known := await _known_send(rt.db(), user_id, client_msg_id, conversation_id)):
            return known
        raise
    req = SendRequest(user_id, conversation_id, body, reply_to, attachments, client_msg_id)
    try:
        outcome = await rt.sender.submit(req)
    except IntegrityError:  # the same client_msg_id sent twice at once: the other one won
        known = await _known_send(rt.db(), user_id, client_msg_id, conversation_id) if client_msg_id else None
        if known is None:
            raise
        outcome = known
    if isinstance(outcome, SendResult):  # a resend: it does not count
        await rt.limiter.refund(counted)
        return outcome
    msg, recipients, _kind = outcome
    out = message_out(msg)
    await rt.hub.publish(
        recipients,
        {"type": "message", "message": out.model_dump(mode="json")},
        conversation=str(conversation_id),
        seq=msg.seq,
    )
    return SendResult(out, False)


async def _known_send(
    db: Database, user_id: uuid.UUID, client_msg_id: str, conversation_id: uuid.UUID
) -> SendResult | None:
    """The message a resend of `client_msg_id` repeats, if it was stored."""
    async with db.session() as session:
        existing = await _by_client_id(session, user_id, client_msg_id)
        return _duplicate(existing, conversation_id) if existing is not None else None


@dataclass
class SendRequest:
    user_id: uuid.UUID
    conversation_id: uuid.UUID
    body: str
    reply_to: int | None
    attachments: list[str]
    client_msg_id: str | None


Stored = tuple[Message, list[uuid.UUID], str]


async def _send_in_tx(session: AsyncSession, req: SendRequest, events: OutboxBatch) -> SendResult | Stored:
    """One send inside an open transaction. Refusals raise before anything is written for it.

    A resend of a stored `client_msg_id` is found by the send statement itself (it inserts nothing),
    so a new message pays no separate look-up."""
    stored = await _store_message(
        session, events, req.user_id, req.conversation_id, req.body, req.reply_to, req.attachments, req.client_msg_id
    )
    if stored is not None:
        return stored
    if req.client_msg_id is not None:
        existing = await _by_client_id(session, req.user_id, req.client_msg_id)
        if existing is not None:
            return _duplicate(existing, req.conversation_id)
    raise await _refusal(session, req.user_id, req.conversation_id)


class SendBatcher:
    """Group commit: sends that arrive while a transaction is being written share the next one.

    One transaction (one WAL flush) for a batch instead of one per message; at low load a batch is a
    single message, so nothing waits. A refusal (not a member, blocked...) raises before that item
    writes anything, so it fails alone. Any database error aborts the batch, whose items are then
    retried one transaction each, so one bad item (e.g. a racing duplicate client_msg_id) cannot fail
    the others. The conversation row locks still number each conversation's messages in commit order.
    """

    def __init__(self, db: Database, *, max_batch: int = 64) -> None:
        self.db = db
        self.max_batch = max_batch
        self.pending: list[tuple[SendRequest, asyncio.Future[SendResult | Stored]]] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopped = False

    def start(self) -> None:
        """Called by `build_runtime`: the writer runs as long as the runtime."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="messaging-send-batcher")

    async def submit(self, req: SendRequest) -> SendResult | Stored:
        if self._stopped or self._task is None or self._task.done():
            raise ServiceUnavailable("shutting down" if self._stopped else "the message writer is not running")
        fut: asyncio.Future[SendResult | Stored] = asyncio.get_running_loop().create_future()
        self.pending.append((req, fut))
        self._wake.set()
        return await fut

    async def stop(self) -> None:
        """Called on shutdown (the stop hook, and `MessagingRuntime.aclose`): sends still waiting get a 503."""
        self._stopped = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None
        for _, fut in self.pending:
            if not fut.done():
                fut.set_exception(ServiceUnavailable("shutting down"))
        self.pending.clear()

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self.pending:
                batch, self.pending = self.pending[: self.max_batch], self.pending[self.max_batch :]
                try:
                    await self._write(batch)
                except Exception as exc:  # never leave a sender waiting
                    for _, fut in batch:
                        if not fut.done():
                            fut.set_exception(exc)

    async def _write(self, batch: list[tuple[SendRequest, asyncio.Future[SendResult | Stored]]]) -> None:
        outcomes: list[tuple[asyncio.Future[SendResult | Stored], SendResult | Stored | None, Exception | None]] = []
        try:
            async with self.db.transaction() as session:
                events = OutboxBatch(session)  # the batch's quark.message.sent events: one INSERT
                for req, fut in batch:
                    try:
                        outcomes.append((fut, await _send_in_tx(session, req, events), None))
                    except QuarkError as exc:
                        outcomes.append((fut, None, exc))
                await events.flush()
        except Exception:
            if len(batch) == 1:
                raise
            for item in batch:  # one at a time: only the item at fault fails
                try:
                    await self._write([item])
                except Exception as exc:
                    if not item[1].done():
                        item[1].set_exception(exc)
            return
        for fut, result, error in outcomes:
            if fut.done():
                continue
            if error is not None:
                fut.set_exception(error)
            else:
                assert result is not None
                fut.set_result(result)


async def _by_client_id(session: AsyncSession, user_id: uuid.UUID, client_msg_id: str) -> Message | None:
    return await session.scalar(
        select(Message).where(Message.sender_id == user_id, Message.client_msg_id == client_msg_id)
    )


def _duplicate(existing: Message, conversation_id: uuid.UUID) -> SendResult:
    if existing.conversation_id != conversation_id:
        raise Conflict("client_msg_id already used for a message in another conversation")
    return SendResult(message_out(existing), True)


# One statement for the hot path: check the sender may post (member; channel admin; no block in a direct
# chat) and that this is not a resend of a stored `client_msg_id`, take the conversation's row lock and its
# next seq, insert the message, move the sender's read marker, and return the members to deliver to. When
# it returns nothing, the caller looks for the resent message, else `_refusal` says why.
_SEND = text(
    """
WITH allowed AS (
    SELECT c.id FROM conversations c
    JOIN members me ON me.conversation_id = c.id AND me.user_id = CAST(:uid AS uuid)
    WHERE c.id = CAST(:cid AS uuid)
      AND (c.kind <> 'channel' OR me.role IN ('owner', 'admin'))
      AND (c.kind <> 'direct' OR c.member_count = 2)
      AND (CAST(:client_msg_id AS varchar) IS NULL OR NOT EXISTS (
          SELECT 1 FROM messages m WHERE m.sender_id = CAST(:uid AS uuid)
            AND m.client_msg_id = CAST(:client_msg_id AS varchar)))
      AND NOT (c.kind = 'direct' AND EXISTS (
          SELECT 1 FROM members peer JOIN blocks b
            ON (b.blocker_id = CAST(:uid AS uuid) AND b.blocked_id = peer.user_id)
            OR (b.blocked_id = CAST(:uid AS uuid) AND b.blocker_id = peer.user_id)
          WHERE peer.conversation_id = c.id AND peer.user_id <> CAST(:uid AS uuid)))
), conv AS (
    UPDATE conversations c SET last_seq = c.last_seq + 1, last_activity_at = now()
    FROM allowed WHERE c.id = allowed.id
    RETURNING c.last_seq AS seq, c.kind AS kind
), ins AS (
    INSERT INTO messages (conversation_id, seq, sender_id, body, reply_to_id, attachments, mentions,
                          client_msg_id, created_at)
    SELECT CAST(:cid AS uuid), conv.seq, CAST(:uid AS uuid), CAST(:body AS text), CAST(:reply_to AS bigint),
           CAST(:attachments AS jsonb), CAST(:mentions AS jsonb), CAST(:client_msg_id AS varchar),
           CAST(:created_at AS timestamptz)
    FROM conv
    RETURNING id, seq
), mark AS (
    UPDATE members m SET last_read_seq = ins.seq FROM ins
    WHERE m.conversation_id = CAST(:cid AS uuid) AND m.user_id = CAST(:uid AS uuid) AND m.last_read_seq < ins.seq
)
SELECT ins.id, ins.seq, conv.kind,
       ARRAY(SELECT user_id FROM members WHERE conversation_id = CAST(:cid AS uuid)) AS members
FROM ins, conv
"""
)


async def _refusal(session: AsyncSession, user_id: uuid.UUID, conversation_id: uuid.UUID) -> Exception:
    """Why `_SEND` inserted nothing (the slow path, only on refusal)."""
    try:
        conv, member = await load_conversation(session, conversation_id, user_id)
    except NotFound as exc:
        return exc
    refused = await posting_refusal(session, conv, member, user_id)
    return refused or Conflict("the conversation changed meanwhile; send again")


async def _store_message(
    session: AsyncSession,
    events: OutboxBatch,
    user_id: uuid.UUID,
    conversation_id: uuid.UUID,
    body: str,
    reply_to: int | None,
    attachments: list[str],
    client_msg_id: str | None,
) -> Stored | None:
    """Runs inside the caller's transaction; a few round trips (it is the hot path). None: nothing was
    stored (a resend, or a refusal; the caller tells which).

    The conversation's row lock numbers its messages in commit order.
    """
    if reply_to is not None:
        target = await session.scalar(select(Message.conversation_id).where(Message.id == reply_to))
        if target != conversation_id:
            raise InvalidInput("reply_to is not a message of this conversation", field="reply_to")
    mentioned = await _mentions(session, body, conversation_id, user_id) if "@" in body else []
    created_at = now()
    params = {
        "cid": conversation_id,
        "uid": user_id,
        "body": body,
        "reply_to": reply_to,
        "attachments": json.dumps(attachments),
        "mentions": json.dumps([str(u) for u in mentioned]),
        "client_msg_id": client_msg_id,
        "created_at": created_at,
    }
    row = (await session.execute(_SEND, params)).one_or_none()
    if row is None:
        return None
    msg_id, seq, kind, recipients = row
    msg = Message(
        id=msg_id,
        conversation_id=conversation_id,
        seq=seq,
        sender_id=user_id,
        body=body,
        reply_to_id=reply_to,
        attachments=attachments,
        mentions=[str(u) for u in mentioned],
        client_msg_id=client_msg_id,
        created_at=created_at,
    )
    events.add(
        MessageSent(
            message_id=msg_id,
            conversation_id=str(conversation_id),
            conversation_kind=kind,
            seq=seq,
            sender_id=str(user_id),
            reply_to=reply_to,
            attachments=attachments,
            mention_ids=[str(u) for u in mentioned],
            created_at=created_at,
        ),
    )
    for uid in mentioned:
        await create_notification(
            session,
            uid,
            "mention",
            user_id,
            {"conversation_id": str(conversation_id), "message_id": msg.id, "seq": seq, "excerpt": body[:140]},
        )
    return msg, recipients, kind


async def _mentions(
    session: AsyncSession, body: str, conversation_id: uuid.UUID, sender_id: uuid.UUID
) -> list[uuid.UUID]:
    """`@name`s in the body that are members of the conversation (other than the sender)."""
    names = list(dict.fromkeys(n.lower().rstrip(".") for n in MENTION.findall(body)))[:MAX_MENTIONS]
    if not names:
        return []
    rows = await session.scalars(
        select(User.user_id)
        .join(Member, and_(Member.user_id == User.user_id, Member.conversation_id == conversation_id))
        .where(func.lower(User.username).in_(names), User.user_id != sender_id)
    )
    return sorted(set(rows), key=str)


async def notify_offline_members(rt: MessagingRuntime, session: AsyncSession, sent: MessageSent) -> None:
    """One collapsing 'message' notification per conversation for each member with no open connection
    who has not read that far yet. Runs in the `notify` consumer, after the message's transaction
    committed: the sender does not wait for it, and a crash after the commit loses none (the inbox
    applies each event once). A message deleted meanwhile notifies nobody; channels notify nobody."""
    if sent.conversation_kind == "channel":
        return
    sender = uuid.UUID(sent.sender_id)
    rows = (
        await session.execute(
            select(Member.user_id, Message.body)
            .join(Message, and_(Message.id == sent.message_id, Message.deleted_at.is_(None)))
            .where(
                Member.conversation_id == uuid.UUID(sent.conversation_id),
                Member.user_id != sender,
                Member.last_read_seq < sent.seq,
            )
        )
    ).all()
    if not rows:
        return
    body = rows[0].body
    unread = [r.user_id for r in rows]
    online = await rt.hub.online(unread)
    for uid in sorted((u for u in unread if u not in online), key=str):
        await create_notification(
            session,
            uid,
            "message",
            sender,
            {
                "conversation_id": sent.conversation_id,
                "message_id": sent.message_id,
                "seq": sent.seq,
                "excerpt": body[:140],
            },
            group_key=f"chat:{sent.conversation_id}",
        )
