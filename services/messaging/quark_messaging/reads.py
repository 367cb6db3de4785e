"""Reading: conversation lists, history, unread counts, read markers (receipts) and resume after a reconnect."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, and_, func, or_, select
from sqlalchemy.dialects.postgresql import distinct_on
from sqlalchemy.ext.asyncio import AsyncSession

from quark_messaging.common import (
    chat_frame,
    chat_out,
    load_conversation,
    member_ids,
    message_out,
    require_member,
)
from quark_messaging.models import Conversation, Member, Message
from quark_messaging.notifications import mark_group_read
from quark_messaging.runtime import MessagingRuntime
from quark_messaging.schemas import (
    ChatPage,
    MessageOut,
    MessagePage,
    UnreadOut,
)
from quark_sdk.errors import (
    InvalidInput,
    NotFound,
)
from quark_sdk.pagination import decode_cursor, encode_cursor, page_of


async def list_chats(session: AsyncSession, user_id: uuid.UUID, *, limit: int, cursor: str | None) -> ChatPage:
    """The caller's conversations, most recently active first, with unread counts and the last message."""
    stmt = (
        select(Conversation, Member)
        .join(Member, Member.conversation_id == Conversation.id)
        .where(Member.user_id == user_id)
    )
    page, nxt = await _by_activity(session, stmt, limit, cursor)
    ids = [c.id for c, _ in page]
    unread = await unread_counts(session, user_id, ids)
    last = await _last_messages(session, ids)
    items = [chat_out(c, m, user_id, unread=unread.get(c.id, 0), last=last.get(c.id)) for c, m in page]
    return ChatPage(items=items, next_cursor=nxt)


async def list_channels(
    session: AsyncSession, user_id: uuid.UUID, *, query: str | None, limit: int, cursor: str | None
) -> ChatPage:
    """Public channels anybody may read and subscribe to, most recently active first."""
    stmt = (
        select(Conversation, Member)
        .outerjoin(Member, and_(Member.conversation_id == Conversation.id, Member.user_id == user_id))
        .where(Conversation.kind == "channel")
    )
    if query:
        escaped = query.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        stmt = stmt.where(func.lower(Conversation.title).like(f"%{escaped}%", escape="\\"))
    page, nxt = await _by_activity(session, stmt, limit, cursor)
    items = [chat_out(c, m, user_id) for c, m in page]
    return ChatPage(items=items, next_cursor=nxt)


async def _by_activity(
    session: AsyncSession, stmt: Select[tuple[Conversation, Member]], limit: int, cursor: str | None
) -> tuple[list[Any], str | None]:
    """A page of (conversation, membership) rows, most recently active first, after `cursor`."""
    if cursor:
        at, cid = decode_cursor(cursor, (datetime, uuid.UUID))
        stmt = stmt.where(
            or_(Conversation.last_activity_at < at, and_(Conversation.last_activity_at == at, Conversation.id < cid))
        )
    stmt = stmt.order_by(Conversation.last_activity_at.desc(), Conversation.id.desc()).limit(limit + 1)
    rows = (await session.execute(stmt)).all()
    return page_of(rows, limit, lambda r: encode_cursor(r[0].last_activity_at, r[0].id))


async def _last_messages(session: AsyncSession, ids: list[uuid.UUID]) -> dict[uuid.UUID, Message]:
    if not ids:
        return {}
    rows = await session.scalars(
        select(Message)
        .where(Message.conversation_id.in_(ids))
        .ext(distinct_on(Message.conversation_id))
        .order_by(Message.conversation_id, Message.seq.desc())
    )
    return {m.conversation_id: m for m in rows}


async def unread_counts(
    session: AsyncSession, user_id: uuid.UUID, ids: list[uuid.UUID] | None = None
) -> dict[uuid.UUID, int]:
    """Messages after the caller's read marker, not their own and not deleted, per conversation."""
    stmt = (
        select(Member.conversation_id, func.count(Message.id))
        .join(
            Message,
            and_(
                Message.conversation_id == Member.conversation_id,
                Message.seq > Member.last_read_seq,
                Message.deleted_at.is_(None),
                Message.sender_id.is_distinct_from(Member.user_id),
            ),
        )
        .where(Member.user_id == user_id)
        .group_by(Member.conversation_id)
    )
    if ids is not None:
        if not ids:
            return {}
        stmt = stmt.where(Member.conversation_id.in_(ids))
    return {cid: n for cid, n in (await session.execute(stmt)).all()}


async def unread_summary(session: AsyncSession, user_id: uuid.UUID) -> UnreadOut:
    counts = await unread_counts(session, user_id)
    return UnreadOut(total=sum(counts.values()), conversations={str(k): v for k, v in counts.items() if v})


async def get_message(session: AsyncSession, user_id: uuid.UUID, message_id: int) -> MessageOut:
    msg = await session.get(Message, message_id)
    if msg is None:
        raise NotFound("message not found")
    try:
        await load_conversation(session, msg.conversation_id, user_id)
    except NotFound:
        raise NotFound("message not found") from None
    return message_out(msg)


async def history(
    session: AsyncSession,
    user_id: uuid.UUID,
    conversation_id: uuid.UUID,
    *,
    before: int | None,
    after: int | None,
    limit: int,
) -> MessagePage:
    """A page of messages in ascending seq: the latest, older than `before`, or newer than `after`."""
    if before is not None and after is not None:
        raise InvalidInput("give either before or after, not both", field="before")
    await load_conversation(session, conversation_id, user_id)
    return await history_page(session, conversation_id, before=before, after=after, limit=limit)


async def history_page(
    session: AsyncSession, conversation_id: uuid.UUID, *, before: int | None, after: int | None, limit: int
) -> MessagePage:
    """`history` once the caller may read the conversation (checked by the caller: `load_conversation`)."""
    stmt = select(Message).where(Message.conversation_id == conversation_id)
    if after is not None:
        rows = list(await session.scalars(stmt.where(Message.seq > after).order_by(Message.seq).limit(limit + 1)))
        more_newer, more_older = len(rows) > limit, after > 0
        page = rows[:limit]
    else:
        if before is not None:
            stmt = stmt.where(Message.seq < before)
        rows = list(await session.scalars(stmt.order_by(Message.seq.desc()).limit(limit + 1)))
        more_older = len(rows) > limit
        page = list(reversed(rows[:limit]))
        more_newer = before is not None and bool(
            await session.scalar(
                select(func.count())
                .select_from(Message)
                .where(Message.conversation_id == conversation_id, Message.seq >= before)
            )
        )
    older = page[0].seq if page and more_older and page[0].seq > 1 else None
    newer = page[-1].seq if page and more_newer else None
    if not page and after is not None:
        newer = None
    return MessagePage(items=[message_out(m) for m in page], older=older, newer=newer)


async def mark_read(
    rt: MessagingRuntime, session: AsyncSession, user_id: uuid.UUID, conversation_id: uuid.UUID, seq: int
) -> int:
    """Move the read marker forward (never back) and tell the other members (read receipts)."""
    async with session.begin():
        conv, member = await load_conversation(session, conversation_id, user_id)
        m = require_member(member)
        target = min(seq, conv.last_seq)
        moved = target > m.last_read_seq
        if moved:
            m.last_read_seq = target
        current = max(target, m.last_read_seq)
        recipients = await member_ids(session, conversation_id) if moved and conv.kind != "channel" else []
    if moved:
        # Seen notifications of this conversation are read too.
        await mark_group_read(session, user_id, f"chat:{conversation_id}")
        await rt.hub.publish(
            recipients or [user_id], chat_frame("read", conversation_id, user_id=str(user_id), seq=current)
        )
    return current


@dataclass
class ResumeBatch:
    conversation_id: uuid.UUID
    messages: list[MessageOut]
    truncated: bool
    last_seq: int


async def resume(
    session: AsyncSession, user_id: uuid.UUID, after: dict[uuid.UUID, int], *, limit: int
) -> list[ResumeBatch]:
    """What the caller missed: per conversation, the messages after the seq it last saw.

    Conversations the client does not list (new to it) start from the caller's read marker.
    At most `limit` messages per conversation; `truncated` says the client must page the rest.
    """
    rows = (
        await session.execute(
            select(Member.conversation_id, Member.last_read_seq, Conversation.last_seq)
            .join(Conversation, Conversation.id == Member.conversation_id)
            .where(Member.user_id == user_id)
        )
    ).all()
    out: list[ResumeBatch] = []
    for cid, read_seq, last_seq in rows:
        start = after.get(cid, read_seq)
        if last_seq <= start:
            continue
        msgs = list(
            await session.scalars(
                select(Message)
                .where(Message.conversation_id == cid, Message.seq > start)
                .order_by(Message.seq)
                .limit(limit + 1)
            )
        )
        out.append(ResumeBatch(cid, [message_out(m) for m in msgs[:limit]], len(msgs) > limit, last_seq))
    return out
