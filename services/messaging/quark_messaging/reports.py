"""Reporting a message to the moderation queue, and applying the queue's decisions on messages.

Only a participant of the chat may report one of its messages (not their own). The report event
(`quark.message.reported`, private to the moderation module) carries the message and its few neighbours —
what a moderator needs to judge it in context, and nothing else of the private chat."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from quark_messaging.common import member_ids, message_out, now
from quark_messaging.models import Member, Message, MessageReport, User
from quark_messaging.runtime import MessagingRuntime
from quark_messaging.schemas import MessageReported, ModerationDecided, ReportOut, ThreadLine
from quark_sdk.errors import Conflict, InvalidInput, NotFound
from quark_sdk.outbox import add_event

RESOLUTIONS = {"dismiss": "dismissed", "hide": "hidden", "delete": "deleted", "warn": "warned",
               "suspend": "suspended"}


def _clean_reason(reason: str) -> str:
    cleaned = "".join(c if c >= " " or c == "\n" else " " for c in reason).strip()
    if not cleaned:
        raise InvalidInput("reason is empty", field="reason")
    return cleaned[:1000]


async def _neighbourhood(session: AsyncSession, msg: Message, around: int) -> list[ThreadLine]:
    """The reported message and up to `around` live messages on each side, oldest first."""
    live = (Message.conversation_id == msg.conversation_id, Message.deleted_at.is_(None),
            Message.hidden_at.is_(None))
    before = (await session.scalars(select(Message).where(*live, Message.seq < msg.seq)
                                    .order_by(Message.seq.desc()).limit(around))).all()
    after = (await session.scalars(select(Message).where(*live, Message.seq > msg.seq)
                                   .order_by(Message.seq).limit(around))).all()
    lines = [*reversed(before), msg, *after]
    senders = {m.sender_id for m in lines if m.sender_id is not None}
    names: dict[uuid.UUID, str] = {uid: name for uid, name in (await session.execute(
        select(User.user_id, User.username).where(User.user_id.in_(senders)))).all()} if senders else {}
    return [ThreadLine(message_id=str(m.id), sender_id=str(m.sender_id) if m.sender_id else None,
                       sender_username=names.get(m.sender_id) if m.sender_id else None, body=m.body,
                       created_at=m.created_at, reported=m.id == msg.id) for m in lines]


async def report_message(rt: MessagingRuntime, session: AsyncSession, user_id: uuid.UUID, message_id: int,
                         reason: str) -> ReportOut:
    cleaned = _clean_reason(reason)
    s = rt.settings
    await rt.limiter.check(f"report:{user_id}", limit=s.report_rate_limit, window=s.report_rate_window,
                           detail=f"too many reports: at most {s.report_rate_limit} per {s.report_rate_window:g}s")
    try:
        async with session.begin():
            msg = await session.get(Message, message_id)
            # Not a participant: the message does not exist for them (no oracle of other chats' ids).
            if msg is None or await session.get(Member, (msg.conversation_id, user_id)) is None:
                raise NotFound("message not found")
            if msg.deleted_at is not None or msg.hidden_at is not None:
                raise Conflict("the message is gone", code="message-gone")
            if msg.sender_id == user_id:
                raise InvalidInput("you cannot report your own message", field="message_id")
            row = MessageReport(id=uuid.uuid4(), message_id=msg.id, reporter_id=user_id, reason=cleaned,
                                status="open", created_at=now())
            session.add(row)
            await session.flush()
            await add_event(session, MessageReported(
                report_id=str(row.id), chat_id=str(msg.conversation_id), message_id=str(msg.id),
                author_id=str(msg.sender_id) if msg.sender_id else None, reporter_id=str(user_id), reason=cleaned,
                thread=await _neighbourhood(session, msg, s.report_context),
            ), subject=str(msg.conversation_id))
    except IntegrityError as exc:
        if "uq_message_reports_open" in str(exc.orig):
            raise Conflict("you have already reported this message", code="already-reported") from None
        raise
    return ReportOut(id=row.id, message_id=row.message_id, status=row.status, created_at=row.created_at)


async def apply_decision(rt: MessagingRuntime, session: AsyncSession, decision: ModerationDecided) -> None:
    """The moderation queue decided about a message (inside the consumer's transaction): hide or delete it,
    then close the open reports on it. Members' open WebSockets learn of it like of an edit or a deletion."""
    if decision.module != "messaging" or decision.kind != "chat_message":
        return
    try:
        message_id = int(decision.target_id)
    except ValueError:
        return
    msg = await session.scalar(select(Message).where(Message.id == message_id).with_for_update())
    if msg is None:
        return
    frame: dict[str, Any] | None = None
    if msg.deleted_at is None:
        if decision.action == "delete":
            msg.deleted_at = now()
            msg.body = ""
            msg.attachments = []
            frame = {"type": "message.deleted", "conversation_id": str(msg.conversation_id),
                     "message_id": msg.id, "seq": msg.seq}
        elif decision.action == "hide" and msg.hidden_at is None:
            msg.hidden_at = now()
            frame = {"type": "message.updated", "message": message_out(msg).model_dump(mode="json")}
    await session.execute(
        update(MessageReport).where(MessageReport.message_id == msg.id, MessageReport.status == "open")
        .values(status="resolved", resolution=RESOLUTIONS.get(decision.action, "resolved"), resolved_at=now())
    )
    if frame is not None:
        await rt.hub.publish(await member_ids(session, msg.conversation_id), frame)
