"""Conversations and messages: the rules (membership, roles, blocks, idempotent sends) and live pushes.

Plain Python, no HTTP types: the REST routes, the WebSocket handler and the event consumers call
the same functions. Each write opens its own transaction; frames are pushed to the hub only
after the commit, so a client is never told about something that then rolls back.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ARRAY, Text, and_, delete, func, literal, or_, select, text, update
from sqlalchemy.dialects.postgresql import distinct_on
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from quark_messaging.models import Block, Conversation, Member, Message, Notification, User
from quark_messaging.notifications import create_notification
from quark_messaging.runtime import MessagingRuntime
from quark_messaging.schemas import (
    ChatCreated,
    ChatDetail,
    ChatOut,
    ChatPage,
    MemberOut,
    MessageOut,
    MessagePage,
    MessageSent,
    UnreadOut,
)
from quark_sdk.errors import (
    Conflict,
    InvalidInput,
    NotFound,
    PayloadTooLarge,
    PermissionDenied,
    QuarkError,
    ServiceUnavailable,
)
from quark_sdk.outbox import OutboxBatch, add_event

MENTION = re.compile(r"(?<![\w@])@([A-Za-z0-9_][A-Za-z0-9_.-]{0,63})")
MAX_MENTIONS = 20
ADMIN_ROLES = ("owner", "admin")
# What a notification's data holds of its actor (words, name, id): dropped when the actor deletes the account.
PERSONAL_NOTIFICATION_KEYS = ["excerpt", "follower_id", "follower_username", "author_username", "user_id"]


def now() -> datetime:
    return datetime.now(UTC)


def direct_key(a: uuid.UUID, b: uuid.UUID) -> str:
    lo, hi = sorted((str(a), str(b)))
    return f"{lo}:{hi}"


# --------------------------------------------------------------------------- output


def message_out(m: Message) -> MessageOut:
    deleted = m.deleted_at is not None
    return MessageOut(
        id=m.id,
        conversation_id=m.conversation_id,
        seq=m.seq,
        sender_id=m.sender_id,
        body="" if deleted else m.body,
        reply_to=m.reply_to_id,
        attachments=[] if deleted else list(m.attachments),
        mentions=[uuid.UUID(x) for x in (m.mentions or [])],
        client_msg_id=m.client_msg_id,
        created_at=m.created_at,
        edited_at=m.edited_at,
        deleted=deleted,
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


# --------------------------------------------------------------------------- users and blocks


async def remember_user(session: AsyncSession, user_id: uuid.UUID, username: str | None) -> None:
    """Keep the name of an account we hear about (token or event): mentions resolve names to ids."""
    if not username or len(username) > 64:
        return
    stmt = pg_insert(User).values(user_id=user_id, username=username, updated_at=func.now())
    stmt = stmt.on_conflict_do_update(
        index_elements=[User.user_id],
        set_={"username": username, "updated_at": func.now()},
        where=User.username != username,
    )
    await session.execute(stmt)


async def touch_user(rt: MessagingRuntime, user_id: uuid.UUID, username: str | None) -> None:
    async with rt.db().session() as session, session.begin():
        await remember_user(session, user_id, username)


async def blocked_between(session: AsyncSession, a: uuid.UUID, b: uuid.UUID) -> bool:
    row = await session.scalar(
        select(func.count())
        .select_from(Block)
        .where(
            or_(and_(Block.blocker_id == a, Block.blocked_id == b), and_(Block.blocker_id == b, Block.blocked_id == a))
        )
    )
    return bool(row)


async def set_block(session: AsyncSession, blocker: uuid.UUID, blocked: uuid.UUID, on: bool) -> None:
    if on:
        await session.execute(pg_insert(Block).values(blocker_id=blocker, blocked_id=blocked).on_conflict_do_nothing())
    else:
        await session.execute(delete(Block).where(Block.blocker_id == blocker, Block.blocked_id == blocked))


# --------------------------------------------------------------------------- access


async def _load(
    session: AsyncSession, conversation_id: uuid.UUID, user_id: uuid.UUID, *, lock: bool = False
) -> tuple[Conversation, Member | None]:
    """The conversation and the caller's membership; a private one the caller is not in does not exist."""
    stmt = select(Conversation).where(Conversation.id == conversation_id)
    if lock:
        stmt = stmt.with_for_update()
    conv = await session.scalar(stmt)
    member = None
    if conv is not None:
        member = await session.get(Member, (conversation_id, user_id))
    if conv is None or (member is None and conv.kind != "channel"):
        raise NotFound("conversation not found")
    return conv, member


def _require_member(member: Member | None) -> Member:
    if member is None:
        raise PermissionDenied("you are not a member of this conversation")
    return member


def _require_admin(conv: Conversation, member: Member | None) -> Member:
    m = _require_member(member)
    if conv.kind == "direct":
        raise InvalidInput("direct conversations have no administrators", field="conversation")
    if m.role not in ADMIN_ROLES:
        raise PermissionDenied("only the owner and admins may do this")
    return m


async def member_ids(session: AsyncSession, conversation_id: uuid.UUID) -> list[uuid.UUID]:
    rows = await session.scalars(select(Member.user_id).where(Member.conversation_id == conversation_id))
    return list(rows)


async def _push_chat(rt: MessagingRuntime, recipients: list[uuid.UUID], frame: dict[str, Any]) -> None:
    await rt.hub.publish(recipients, frame)


# --------------------------------------------------------------------------- conversations


async def open_direct(
    rt: MessagingRuntime, session: AsyncSession, user_id: uuid.UUID, peer_id: uuid.UUID
) -> tuple[ChatOut, bool]:
    """The one direct conversation of a pair, created on first use. Refused when either blocked the other."""
    if peer_id == user_id:
        raise InvalidInput("a direct conversation needs another person", field="user_id")
    key = direct_key(user_id, peer_id)
    async with session.begin():
        if await blocked_between(session, user_id, peer_id):
            raise PermissionDenied("you cannot message this user")
        conv = await session.scalar(select(Conversation).where(Conversation.direct_key == key))
        created = False
        if conv is None:
            conv_id = uuid.uuid4()
            inserted = await session.execute(
                pg_insert(Conversation)
                .values(id=conv_id, kind="direct", direct_key=key, member_count=2)
                .on_conflict_do_nothing(index_elements=[Conversation.direct_key])
                .returning(Conversation.id)
            )
            if inserted.scalar() is not None:
                created = True
                session.add_all(
                    [
                        Member(conversation_id=conv_id, user_id=user_id, role="member"),
                        Member(conversation_id=conv_id, user_id=peer_id, role="member"),
                    ]
                )
                await session.flush()
                await add_event(
                    session,
                    ChatCreated(
                        conversation_id=str(conv_id),
                        kind="direct",
                        title=None,
                        owner_id=None,
                        member_ids=[str(user_id), str(peer_id)],
                        created_at=now(),
                    ),
                )
            conv = await session.scalar(
                select(Conversation).where(Conversation.direct_key == key).execution_options(populate_existing=True)
            )
        assert conv is not None
        member = await session.get(Member, (conv.id, user_id))
        out = chat_out(conv, member, user_id)
    if created:
        await _push_chat(rt, [user_id, peer_id], chat_frame("chat.created", conv.id, kind="direct"))
    return out, created


async def create_chat(
    rt: MessagingRuntime, session: AsyncSession, user_id: uuid.UUID, kind: str, title: str, invitees: list[uuid.UUID]
) -> ChatOut:
    s = rt.settings
    if len(title) > s.max_title_chars:
        raise InvalidInput(f"title longer than {s.max_title_chars} characters", field="title")
    others = list(dict.fromkeys(i for i in invitees if i != user_id))
    if len(others) + 1 > s.max_group_members:
        raise InvalidInput(f"a conversation holds at most {s.max_group_members} members", field="member_ids")
    if len(others) > s.max_invite_batch:
        raise InvalidInput(f"at most {s.max_invite_batch} invitations at once", field="member_ids")
    async with session.begin():
        refused = await _blocked_any(session, user_id, others)
        if refused:
            raise PermissionDenied(
                "some of these users cannot be added by you", extra={"user_ids": [str(u) for u in refused]}
            )
        conv = Conversation(id=uuid.uuid4(), kind=kind, title=title, owner_id=user_id, member_count=1 + len(others))
        session.add(conv)
        await session.flush()
        role = "subscriber" if kind == "channel" else "member"
        session.add(Member(conversation_id=conv.id, user_id=user_id, role="owner"))
        session.add_all([Member(conversation_id=conv.id, user_id=o, role=role) for o in others])
        await session.flush()
        await session.refresh(conv)
        await add_event(
            session,
            ChatCreated(
                conversation_id=str(conv.id),
                kind=kind,
                title=title,
                owner_id=str(user_id),
                member_ids=[str(user_id), *map(str, others)],
                created_at=conv.created_at,
            ),
        )
        owner = await session.get(Member, (conv.id, user_id))
        out = chat_out(conv, owner, user_id)
    await _push_chat(rt, [user_id, *others], chat_frame("chat.created", conv.id, kind=kind))
    return out


async def _blocked_any(session: AsyncSession, user_id: uuid.UUID, others: list[uuid.UUID]) -> list[uuid.UUID]:
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


async def get_chat(
    session: AsyncSession, user_id: uuid.UUID, conversation_id: uuid.UUID, *, max_members: int = 1000
) -> ChatDetail:
    conv, member = await _load(session, conversation_id, user_id)
    unread = (await unread_counts(session, user_id, [conversation_id])).get(conversation_id, 0) if member else 0
    last = await session.scalar(
        select(Message).where(Message.conversation_id == conversation_id).order_by(Message.seq.desc()).limit(1)
    )
    base = chat_out(conv, member, user_id, unread=unread, last=last)
    rows = await session.execute(
        select(Member, User.username)
        .outerjoin(User, User.user_id == Member.user_id)
        .where(Member.conversation_id == conversation_id)
        .order_by(Member.joined_at, Member.user_id)
        # Who subscribes to a public channel is for its members to see, not for every passer-by.
        .limit(max_members if member is not None else 0)
    )
    members = [
        MemberOut(
            user_id=m.user_id,
            username=name,
            role=m.role,
            last_read_seq=m.last_read_seq,
            joined_at=m.joined_at,
        )
        for m, name in rows
    ]
    return ChatDetail(**base.model_dump(), members=members)


def _encode_cursor(at: datetime, cid: uuid.UUID) -> str:
    return base64.urlsafe_b64encode(f"{at.isoformat()}|{cid}".encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        at, cid = raw.split("|")
        parsed = datetime.fromisoformat(at)
        if parsed.tzinfo is None:
            raise ValueError("naive")
        return parsed, uuid.UUID(cid)
    except (ValueError, UnicodeDecodeError, binascii.Error):
        raise InvalidInput("cursor is not valid", field="cursor") from None


async def list_chats(session: AsyncSession, user_id: uuid.UUID, *, limit: int, cursor: str | None) -> ChatPage:
    """The caller's conversations, most recently active first, with unread counts and the last message."""
    stmt = (
        select(Conversation, Member)
        .join(Member, Member.conversation_id == Conversation.id)
        .where(Member.user_id == user_id)
        .order_by(Conversation.last_activity_at.desc(), Conversation.id.desc())
        .limit(limit + 1)
    )
    if cursor:
        at, cid = _decode_cursor(cursor)
        stmt = stmt.where(
            or_(Conversation.last_activity_at < at, and_(Conversation.last_activity_at == at, Conversation.id < cid))
        )
    rows = (await session.execute(stmt)).all()
    page, more = rows[:limit], len(rows) > limit
    ids = [c.id for c, _ in page]
    unread = await unread_counts(session, user_id, ids)
    last = await _last_messages(session, ids)
    items = [chat_out(c, m, user_id, unread=unread.get(c.id, 0), last=last.get(c.id)) for c, m in page]
    nxt = _encode_cursor(page[-1][0].last_activity_at, page[-1][0].id) if more and page else None
    return ChatPage(items=items, next_cursor=nxt)


async def list_channels(
    session: AsyncSession, user_id: uuid.UUID, *, query: str | None, limit: int, cursor: str | None
) -> ChatPage:
    """Public channels anybody may read and subscribe to, most recently active first."""
    stmt = (
        select(Conversation, Member)
        .outerjoin(Member, and_(Member.conversation_id == Conversation.id, Member.user_id == user_id))
        .where(Conversation.kind == "channel")
        .order_by(Conversation.last_activity_at.desc(), Conversation.id.desc())
        .limit(limit + 1)
    )
    if query:
        escaped = query.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        stmt = stmt.where(func.lower(Conversation.title).like(f"%{escaped}%", escape="\\"))
    if cursor:
        at, cid = _decode_cursor(cursor)
        stmt = stmt.where(
            or_(Conversation.last_activity_at < at, and_(Conversation.last_activity_at == at, Conversation.id < cid))
        )
    rows = (await session.execute(stmt)).all()
    page, more = rows[:limit], len(rows) > limit
    items = [chat_out(c, m, user_id) for c, m in page]
    nxt = _encode_cursor(page[-1][0].last_activity_at, page[-1][0].id) if more and page else None
    return ChatPage(items=items, next_cursor=nxt)


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


async def rename(
    rt: MessagingRuntime, session: AsyncSession, user_id: uuid.UUID, conversation_id: uuid.UUID, title: str
) -> ChatOut:
    if len(title) > rt.settings.max_title_chars:
        raise InvalidInput(f"title longer than {rt.settings.max_title_chars} characters", field="title")
    async with session.begin():
        conv, member = await _load(session, conversation_id, user_id, lock=True)
        _require_admin(conv, member)
        conv.title = title
        await session.flush()
        out = chat_out(conv, member, user_id)
        recipients = await member_ids(session, conversation_id)
    await _push_chat(rt, recipients, chat_frame("chat.updated", conversation_id, title=title))
    return out


async def invite(
    rt: MessagingRuntime,
    session: AsyncSession,
    user_id: uuid.UUID,
    conversation_id: uuid.UUID,
    invitees: list[uuid.UUID],
) -> list[uuid.UUID]:
    """Add people to a group or channel (owner and admins). Returns who was newly added."""
    s = rt.settings
    wanted = list(dict.fromkeys(invitees))
    if len(wanted) > s.max_invite_batch:
        raise InvalidInput(f"at most {s.max_invite_batch} invitations at once", field="user_ids")
    async with session.begin():
        conv, member = await _load(session, conversation_id, user_id, lock=True)
        _require_admin(conv, member)
        refused = await _blocked_any(session, user_id, wanted)
        if refused:
            raise PermissionDenied(
                "some of these users cannot be added by you", extra={"user_ids": [str(u) for u in refused]}
            )
        existing = set(await member_ids(session, conversation_id))
        new = [u for u in wanted if u not in existing]
        if conv.member_count + len(new) > s.max_group_members:
            raise Conflict(f"a conversation holds at most {s.max_group_members} members")
        role = "subscriber" if conv.kind == "channel" else "member"
        session.add_all(
            [
                Member(
                    conversation_id=conversation_id,
                    user_id=u,
                    role=role,
                    joined_seq=conv.last_seq,
                    last_read_seq=conv.last_seq,
                )
                for u in new
            ]
        )
        conv.member_count += len(new)
        recipients = list(existing | set(new))
    if new:
        await _push_chat(
            rt,
            recipients,
            chat_frame("chat.members_added", conversation_id, user_ids=[str(u) for u in new], by=str(user_id)),
        )
    return new


async def subscribe(
    rt: MessagingRuntime, session: AsyncSession, user_id: uuid.UUID, conversation_id: uuid.UUID
) -> ChatOut:
    async with session.begin():
        conv, member = await _load(session, conversation_id, user_id, lock=True)
        if conv.kind != "channel":
            raise InvalidInput("only public channels can be subscribed to", field="conversation")
        if conv.owner_id is not None and await blocked_between(session, user_id, conv.owner_id):
            raise PermissionDenied("you cannot subscribe to this channel")
        if member is None:
            member = Member(
                conversation_id=conversation_id,
                user_id=user_id,
                role="subscriber",
                joined_seq=conv.last_seq,
                last_read_seq=conv.last_seq,
            )
            session.add(member)
            conv.member_count += 1
            await session.flush()
            await session.refresh(member)
        return chat_out(conv, member, user_id)


async def remove_member(
    rt: MessagingRuntime, session: AsyncSession, user_id: uuid.UUID, conversation_id: uuid.UUID, target: uuid.UUID
) -> None:
    """Leave (target == caller) or kick. The owner leaving hands the group to the oldest admin, else member."""
    async with session.begin():
        conv, member = await _load(session, conversation_id, user_id, lock=True)
        m = _require_member(member)
        if conv.kind == "direct":
            raise InvalidInput("nobody can leave a direct conversation; block the user instead", field="conversation")
        if target != user_id:
            if m.role not in ADMIN_ROLES:
                raise PermissionDenied("only the owner and admins may remove members")
            victim = await session.get(Member, (conversation_id, target))
            if victim is None:
                raise NotFound("that user is not a member")
            if victim.role == "owner" or (victim.role == "admin" and m.role != "owner"):
                raise PermissionDenied("only the owner may remove an admin, and nobody the owner")
        else:
            victim = m
        recipients = await member_ids(session, conversation_id)
        await session.delete(victim)
        conv.member_count -= 1
        if victim.role == "owner":
            await session.flush()
            heir = await session.scalar(
                select(Member)
                .where(Member.conversation_id == conversation_id, Member.role != "subscriber")
                .order_by((Member.role == "admin").desc(), Member.joined_at, Member.user_id)
                .limit(1)
            )
            conv.owner_id = heir.user_id if heir else None
            if heir is not None:
                heir.role = "owner"
        if conv.member_count <= 0:
            await session.delete(conv)
    await _push_chat(
        rt, recipients, chat_frame("chat.member_removed", conversation_id, user_id=str(target), by=str(user_id))
    )


async def set_role(
    rt: MessagingRuntime,
    session: AsyncSession,
    user_id: uuid.UUID,
    conversation_id: uuid.UUID,
    target: uuid.UUID,
    role: str,
) -> None:
    async with session.begin():
        conv, member = await _load(session, conversation_id, user_id, lock=True)
        m = _require_admin(conv, member)
        if m.role != "owner":
            raise PermissionDenied("only the owner may change roles")
        victim = await session.get(Member, (conversation_id, target))
        if victim is None:
            raise NotFound("that user is not a member")
        if victim.role == "owner":
            raise InvalidInput("the owner's role cannot change", field="user_id")
        if conv.kind == "channel" and role == "member":
            role = "subscriber"
        victim.role = role
        recipients = await member_ids(session, conversation_id)
    await _push_chat(rt, recipients, chat_frame("chat.role_changed", conversation_id, user_id=str(target), role=role))


# --------------------------------------------------------------------------- messages


@dataclass
class SendResult:
    message: MessageOut
    duplicate: bool


def _check_body(rt: MessagingRuntime, body: str, attachments: list[str]) -> None:
    s = rt.settings
    if len(body) > s.max_body_chars:
        raise PayloadTooLarge(f"a message holds at most {s.max_body_chars} characters")
    if len(attachments) > s.max_attachments:
        raise InvalidInput(f"at most {s.max_attachments} attachments", field="attachments")
    if not body.strip() and not attachments:
        raise InvalidInput("a message needs a body or an attachment", field="body")


async def send_message(
    rt: MessagingRuntime,
    session: AsyncSession,
    user_id: uuid.UUID,
    username: str | None,
    conversation_id: uuid.UUID,
    body: str,
    *,
    reply_to: int | None = None,
    attachments: list[str] | None = None,
    client_msg_id: str | None = None,
) -> SendResult:
    """Store a message and deliver it live. A resend with the same `client_msg_id` returns the first one
    (and does not count against the rate limit)."""
    attachments = list(dict.fromkeys(attachments or []))
    _check_body(rt, body, attachments)
    if client_msg_id is not None:
        existing = await _by_client_id(session, user_id, client_msg_id)
        try:
            if existing is not None:
                return _duplicate(existing, conversation_id)
        finally:
            await session.rollback()  # after reading `existing`: a rollback expires it
    await rt.limiter.check(
        f"msg:{user_id}",
        limit=rt.settings.message_rate_limit,
        window=rt.settings.message_rate_window,
        detail=f"at most {rt.settings.message_rate_limit} messages per {rt.settings.message_rate_window:g}s",
    )
    req = SendRequest(user_id, conversation_id, body, reply_to, attachments, client_msg_id)
    try:
        outcome = await sender_of(rt).submit(req)
    except IntegrityError:  # the same client_msg_id sent twice at once: the other one won
        existing = await _by_client_id(session, user_id, client_msg_id) if client_msg_id else None
        try:
            if existing is None:
                raise
            return _duplicate(existing, conversation_id)
        finally:
            await session.rollback()
    if isinstance(outcome, SendResult):
        return outcome
    msg, recipients, kind = outcome
    out = message_out(msg)
    await rt.hub.publish(
        recipients,
        {"type": "message", "message": out.model_dump(mode="json")},
        conversation=str(conversation_id),
        seq=msg.seq,
    )
    if kind != "channel":
        await _notify_offline(rt, session, msg, [r for r in recipients if r != user_id])
    return SendResult(out, False)


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
    """One send inside an open transaction. Refusals raise before anything is written for it."""
    if req.client_msg_id is not None:
        existing = await _by_client_id(session, req.user_id, req.client_msg_id)
        if existing is not None:
            return _duplicate(existing, req.conversation_id)
    return await _store_message(
        session, events, req.user_id, req.conversation_id, req.body, req.reply_to, req.attachments, req.client_msg_id
    )


class SendBatcher:
    """Group commit: sends that arrive while a transaction is being written share the next one.

    One transaction (one WAL flush) for a batch instead of one per message; at low load a batch is a
    single message, so nothing waits. A refusal (not a member, blocked...) raises before that item
    writes anything, so it fails alone. Any database error aborts the batch, whose items are then
    retried one transaction each, so one bad item (e.g. a racing duplicate client_msg_id) cannot fail
    the others. The conversation row locks still number each conversation's messages in commit order.
    """

    def __init__(self, rt: MessagingRuntime, *, max_batch: int = 64) -> None:
        self.rt = rt
        self.max_batch = max_batch
        self.pending: list[tuple[SendRequest, asyncio.Future[SendResult | Stored]]] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def submit(self, req: SendRequest) -> SendResult | Stored:
        fut: asyncio.Future[SendResult | Stored] = asyncio.get_running_loop().create_future()
        self.pending.append((req, fut))
        self._wake.set()
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="messaging-send-batcher")
        return await fut

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
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
            async with self.rt.db().transaction() as session:
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


def sender_of(rt: MessagingRuntime) -> SendBatcher:
    if rt.sender is None:
        rt.sender = SendBatcher(rt)
    return rt.sender


async def _by_client_id(session: AsyncSession, user_id: uuid.UUID, client_msg_id: str) -> Message | None:
    return await session.scalar(
        select(Message).where(Message.sender_id == user_id, Message.client_msg_id == client_msg_id)
    )


def _duplicate(existing: Message, conversation_id: uuid.UUID) -> SendResult:
    if existing.conversation_id != conversation_id:
        raise Conflict("client_msg_id already used for a message in another conversation")
    return SendResult(message_out(existing), True)


# One statement for the hot path: check the sender may post (member; channel admin; no block in a direct
# chat), take the conversation's row lock and its next seq, insert the message, move the sender's read
# marker, and return the members to deliver to. When it returns nothing, `_refusal` says why.
_SEND = text(
    """
WITH allowed AS (
    SELECT c.id FROM conversations c
    JOIN members me ON me.conversation_id = c.id AND me.user_id = CAST(:uid AS uuid)
    WHERE c.id = CAST(:cid AS uuid)
      AND (c.kind <> 'channel' OR me.role IN ('owner', 'admin'))
      AND (c.kind <> 'direct' OR c.member_count = 2)
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
        conv, member = await _load(session, conversation_id, user_id)
    except NotFound as exc:
        return exc
    refused = await posting_refusal(session, conv, member, user_id)
    return refused or Conflict("the conversation changed meanwhile; send again")


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


async def _store_message(
    session: AsyncSession,
    events: OutboxBatch,
    user_id: uuid.UUID,
    conversation_id: uuid.UUID,
    body: str,
    reply_to: int | None,
    attachments: list[str],
    client_msg_id: str | None,
) -> tuple[Message, list[uuid.UUID], str]:
    """Runs inside the caller's transaction; a few round trips (it is the hot path).

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
        raise await _refusal(session, user_id, conversation_id)
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


async def _notify_offline(
    rt: MessagingRuntime, session: AsyncSession, msg: Message, recipients: list[uuid.UUID]
) -> None:
    """One collapsing 'message' notification per conversation for recipients with no open connection."""
    if not recipients:
        return
    online = await rt.hub.online(recipients)
    offline = [r for r in recipients if r not in online]
    if not offline:
        return
    async with session.begin():
        for uid in offline:
            await create_notification(
                session,
                uid,
                "message",
                msg.sender_id,
                {
                    "conversation_id": str(msg.conversation_id),
                    "message_id": msg.id,
                    "seq": msg.seq,
                    "excerpt": msg.body[:140],
                },
                group_key=f"chat:{msg.conversation_id}",
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
    _check_body(rt, body, [])
    async with session.begin():
        msg = await _own_message(session, user_id, message_id)
        # An edit reaches the others live like a send, so it obeys the same rule (blocks included).
        conv, member = await _load(session, msg.conversation_id, user_id)
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


async def get_message(session: AsyncSession, user_id: uuid.UUID, message_id: int) -> MessageOut:
    msg = await session.get(Message, message_id)
    if msg is None:
        raise NotFound("message not found")
    try:
        await _load(session, msg.conversation_id, user_id)
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
    await _load(session, conversation_id, user_id)
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
        conv, member = await _load(session, conversation_id, user_id)
        m = _require_member(member)
        target = min(seq, conv.last_seq)
        moved = target > m.last_read_seq
        if moved:
            m.last_read_seq = target
        current = max(target, m.last_read_seq)
        recipients = await member_ids(session, conversation_id) if moved and conv.kind != "channel" else []
    if moved:
        # Seen notifications of this conversation are read too.
        from quark_messaging.notifications import mark_group_read

        await mark_group_read(session, user_id, f"chat:{conversation_id}")
        await rt.hub.publish(
            recipients or [user_id], chat_frame("read", conversation_id, user_id=str(user_id), seq=current)
        )
    return current


async def typing(rt: MessagingRuntime, session: AsyncSession, user_id: uuid.UUID, conversation_id: uuid.UUID) -> None:
    """Ephemeral: never stored, pushed to the other members now."""
    await rt.limiter.check(
        f"typing:{user_id}", limit=rt.settings.typing_rate_limit, window=rt.settings.message_rate_window
    )
    async with session.begin():
        conv, member = await _load(session, conversation_id, user_id)
        m = _require_member(member)
        if conv.kind == "channel" and m.role not in ADMIN_ROLES:
            raise PermissionDenied("only the channel's owner and admins post here")
        recipients = [u for u in await member_ids(session, conversation_id) if u != user_id]
    await rt.hub.publish(recipients, chat_frame("typing", conversation_id, user_id=str(user_id)))


# --------------------------------------------------------------------------- resume


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


# --------------------------------------------------------------------------- account deletion


async def delete_user(session: AsyncSession, user_id: uuid.UUID) -> None:
    """Erase a deleted account's side and nothing of anybody else's (issue #16, item 13).

    Its messages become tombstones from a deleted account (no sender, no text, no attachments) in every
    conversation, so the others keep their conversations, direct ones included, with their own messages
    and a gap-free history. Its memberships, blocks, name and its own notifications go; the notifications
    others received from it stay, orphaned (no actor, none of its text). A conversation nobody is left
    in goes. Idempotent: the user service announces the same deletion again.
    """
    await session.execute(
        update(Message)
        .where(Message.sender_id == user_id)
        .values(
            body="",
            attachments=[],
            mentions=[],
            deleted_at=func.coalesce(Message.deleted_at, func.now()),
            sender_id=None,
            client_msg_id=None,
        )
    )
    owned = list(
        await session.scalars(select(Member.conversation_id).where(Member.user_id == user_id, Member.role == "owner"))
    )
    await session.execute(
        text(
            "UPDATE conversations c SET member_count = member_count - 1 FROM members m "
            "WHERE m.conversation_id = c.id AND m.user_id = :u"
        ),
        {"u": user_id},
    )
    await session.execute(delete(Member).where(Member.user_id == user_id))
    for cid in owned:
        heir = await session.scalar(
            select(Member)
            .where(Member.conversation_id == cid, Member.role != "subscriber")
            .order_by((Member.role == "admin").desc(), Member.joined_at)
            .limit(1)
        )
        if heir is not None:
            heir.role = "owner"
        await session.execute(
            update(Conversation).where(Conversation.id == cid).values(owner_id=heir.user_id if heir else None)
        )
    await session.execute(delete(Conversation).where(Conversation.member_count <= 0))
    await session.execute(delete(Notification).where(Notification.user_id == user_id))
    await session.execute(
        update(Notification)
        .where(Notification.actor_id == user_id)
        .values(actor_id=None, data=Notification.data.op("-")(literal(PERSONAL_NOTIFICATION_KEYS, ARRAY(Text))))
    )
    await session.execute(delete(Block).where(or_(Block.blocker_id == user_id, Block.blocked_id == user_id)))
    await session.execute(delete(User).where(User.user_id == user_id))
