"""What every part of messaging shares: output shaping, the access rules (membership, roles, blocks) and checks.

Plain Python, no HTTP types. Each write elsewhere opens its own transaction and pushes frames to the
hub only after the commit, so a client is never told about something that then rolls back.
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from quark_messaging.models import Block, Conversation, Member, Message
from quark_messaging.schemas import (
    ChatOut,
    MessageOut,
)
from quark_messaging.settings import MessagingSettings
from quark_sdk.errors import (
    InvalidInput,
    NotFound,
    PayloadTooLarge,
    PermissionDenied,
    QuarkError,
)

MENTION = re.compile(r"(?<![\w@])@([A-Za-z0-9_][A-Za-z0-9_.-]{0,63})")
MAX_MENTIONS = 20
ADMIN_ROLES = ("owner", "admin")


def now() -> datetime:
    return datetime.now(UTC)


def direct_key(a: uuid.UUID, b: uuid.UUID) -> str:
    lo, hi = sorted((str(a), str(b)))
    return f"{lo}:{hi}"


def message_out(m: Message) -> MessageOut:
    deleted = m.deleted_at is not None
    gone = deleted or m.hidden_at is not None
    return MessageOut(
        id=m.id,
        conversation_id=m.conversation_id,
        seq=m.seq,
        sender_id=m.sender_id,
        body="" if gone else m.body,
        reply_to=m.reply_to_id,
        attachments=[] if gone else list(m.attachments),
        mentions=[uuid.UUID(x) for x in (m.mentions or [])],
        client_msg_id=m.client_msg_id,
        created_at=m.created_at,
        edited_at=m.edited_at,
        deleted=deleted,
        hidden=m.hidden_at is not None and not deleted,
        sender_deleted=m.sender_id is None,
    )


def chat_out(
    c: Conversation, member: Member | None, user_id: uuid.UUID, *, unread: int = 0, last: Message | None = None
) -> ChatOut:
    peer = None
    if c.kind == "direct" and c.direct_key:
        ids = [uuid.UUID(x) for x in c.direct_key.split(":")]
        peer = next((x for x in ids if x != user_id), ids[0])
    return ChatOut(
        id=c.id,
        kind=c.kind,
        title=c.title,
        owner_id=c.owner_id,
        member_count=c.member_count,
        last_seq=c.last_seq,
        created_at=c.created_at,
        last_activity_at=c.last_activity_at,
        role=member.role if member else None,
        unread=unread,
        last_read_seq=member.last_read_seq if member else 0,
        peer_id=peer,
        last_message=message_out(last) if last is not None else None,
    )


def chat_frame(frame_type: str, conversation_id: uuid.UUID, **extra: Any) -> dict[str, Any]:
    return {"type": frame_type, "conversation_id": str(conversation_id), **extra}


async def blocked_between(session: AsyncSession, a: uuid.UUID, b: uuid.UUID) -> bool:
    row = await session.scalar(
        select(func.count())
        .select_from(Block)
        .where(
            or_(and_(Block.blocker_id == a, Block.blocked_id == b), and_(Block.blocker_id == b, Block.blocked_id == a))
        )
    )
    return bool(row)


async def blocked_any(session: AsyncSession, user_id: uuid.UUID, others: list[uuid.UUID]) -> list[uuid.UUID]:
    if not others:
        return []
    rows = await session.execute(
        select(Block.blocker_id, Block.blocked_id).where(
            or_(
                and_(Block.blocker_id == user_id, Block.blocked_id.in_(others)),
                and_(Block.blocked_id == user_id, Block.blocker_id.in_(others)),
            )
        )
    )
    return sorted({r.blocked_id if r.blocker_id == user_id else r.blocker_id for r in rows}, key=str)


async def load_conversation(
    session: AsyncSession, conversation_id: uuid.UUID, user_id: uuid.UUID, *, lock: bool = False
) -> tuple[Conversation, Member | None]:
    """The conversation and the caller's membership; a private one the caller is not in does not exist."""
    if lock:
        # The membership is read once the conversation's row lock is held (two statements): a join would
        # read it from the snapshot taken before waiting for the lock.
        conv = await session.scalar(select(Conversation).where(Conversation.id == conversation_id).with_for_update())
        member = await session.get(Member, (conversation_id, user_id)) if conv is not None else None
    else:
        row = (
            await session.execute(
                with_membership(select(Conversation, Member), user_id).where(Conversation.id == conversation_id)
            )
        ).first()
        conv, member = (row[0], row[1]) if row is not None else (None, None)
    return visible(conv, member)


def with_membership(stmt: Select[Any], user_id: uuid.UUID | ColumnElement[uuid.UUID]) -> Select[Any]:
    """`stmt` (selecting from Conversation) joined with the caller's Member row, if any."""
    return stmt.outerjoin(Member, and_(Member.conversation_id == Conversation.id, Member.user_id == user_id))


def visible(conv: Conversation | None, member: Member | None) -> tuple[Conversation, Member | None]:
    """A conversation that does not exist, or is private and the caller not in it, is not found."""
    if conv is None or (member is None and conv.kind != "channel"):
        raise NotFound("conversation not found")
    return conv, member


def require_member(member: Member | None) -> Member:
    if member is None:
        raise PermissionDenied("you are not a member of this conversation")
    return member


def require_admin(conv: Conversation, member: Member | None) -> Member:
    m = require_member(member)
    if conv.kind == "direct":
        raise InvalidInput("direct conversations have no administrators", field="conversation")
    if m.role not in ADMIN_ROLES:
        raise PermissionDenied("only the owner and admins may do this")
    return m


async def member_ids(session: AsyncSession, conversation_id: uuid.UUID) -> list[uuid.UUID]:
    rows = await session.scalars(select(Member.user_id).where(Member.conversation_id == conversation_id))
    return list(rows)


async def posting_refusal(
    session: AsyncSession, conv: Conversation, member: Member | None, user_id: uuid.UUID
) -> QuarkError | None:
    """Why `user_id` may not put words in front of the others here, or None: the rule of `_SEND`, for
    sends and edits alike (a member; in a channel its owner or an admin; in a direct chat no block either
    way, and the other person's account still exists)."""
    if member is None:
        return PermissionDenied("you are not a member of this conversation")
    if conv.kind == "channel" and member.role not in ADMIN_ROLES:
        return PermissionDenied("only the channel's owner and admins post here")
    if conv.kind == "direct":
        peers = [uuid.UUID(x) for x in (conv.direct_key or "").split(":") if x != str(user_id)]
        if conv.member_count < 2 or any([await blocked_between(session, user_id, p) for p in peers]):
            return PermissionDenied("you cannot message this user")
    return None


def check_body(s: MessagingSettings, body: str, attachments: list[str]) -> None:
    """The configured limits of a message (the request models only bound parsing)."""
    if len(body) > s.max_body_chars:
        raise PayloadTooLarge(f"a message holds at most {s.max_body_chars} characters")
    if len(attachments) > s.max_attachments:
        raise InvalidInput(f"at most {s.max_attachments} attachments", field="attachments")
    if not body.strip() and not attachments:
        raise InvalidInput("a message needs a body or an attachment", field="body")
