"""Changing a sent message (edit, delete) and typing indicators."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from quark_messaging.common import (
    ADMIN_ROLES,
    chat_frame,
    check_body,
    load_conversation,
    member_ids,
    message_out,
    now,
    posting_refusal,
    require_member,
)
from quark_messaging.models import Conversation, Member, Message
from quark_messaging.runtime import MessagingRuntime
from quark_messaging.schemas import (
    MessageOut,
)
from quark_sdk.errors import (
    NotFound,
    PermissionDenied,
)


async def _own_message(session: AsyncSession, user_id: uuid.UUID, message_id: int) -> Message:
    msg = await session.scalar(select(Message).where(Message.id == message_id).with_for_update())
    if msg is None or await session.get(Member, (msg.conversation_id, user_id)) is None:
        conv = await session.get(Conversation, msg.conversation_id) if msg is not None else None
        if msg is None or conv is None or conv.kind != "channel":
            raise NotFound("message not found")
    if msg.sender_id != user_id:
        raise PermissionDenied("only the author may change a message")
    if msg.deleted_at is not None:
        raise NotFound("message not found")
    return msg


async def edit_message(
    rt: MessagingRuntime, session: AsyncSession, user_id: uuid.UUID, message_id: int, body: str
) -> MessageOut:
    check_body(rt.settings, body, [])
    async with session.begin():
        msg = await _own_message(session, user_id, message_id)
        # An edit reaches the others live like a send, so it obeys the same rule (blocks included).
        conv, member = await load_conversation(session, msg.conversation_id, user_id)
        refused = await posting_refusal(session, conv, member, user_id)
        if refused is not None:
            raise refused
        msg.body = body
        msg.edited_at = now()
        await session.flush()
        out = message_out(msg)
        recipients = await member_ids(session, msg.conversation_id)
    await rt.hub.publish(recipients, {"type": "message.updated", "message": out.model_dump(mode="json")})
    return out


async def delete_message(rt: MessagingRuntime, session: AsyncSession, user_id: uuid.UUID, message_id: int) -> None:
    """A tombstone: the seq stays (resume and pagination stay gap-free), the content is gone."""
    async with session.begin():
        msg = await _own_message(session, user_id, message_id)
        msg.deleted_at = now()
        msg.body = ""
        msg.attachments = []
        conv_id, seq = msg.conversation_id, msg.seq
        recipients = await member_ids(session, conv_id)
    await rt.hub.publish(
        recipients, {"type": "message.deleted", "conversation_id": str(conv_id), "message_id": message_id, "seq": seq}
    )


async def typing(rt: MessagingRuntime, session: AsyncSession, user_id: uuid.UUID, conversation_id: uuid.UUID) -> None:
    """Ephemeral: never stored, pushed to the other members now."""
    await rt.limiter.check(
        f"typing:{user_id}", limit=rt.settings.typing_rate_limit, window=rt.settings.message_rate_window
    )
    async with session.begin():
        conv, member = await load_conversation(session, conversation_id, user_id)
        m = require_member(member)
        if conv.kind == "channel" and m.role not in ADMIN_ROLES:
            raise PermissionDenied("only the channel's owner and admins post here")
        recipients = [u for u in await member_ids(session, conversation_id) if u != user_id]
    await rt.hub.publish(recipients, chat_frame("typing", conversation_id, user_id=str(user_id)))
