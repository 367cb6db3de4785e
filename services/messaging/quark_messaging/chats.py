"""Conversations: direct chats, groups and channels, their members and roles."""

from __future__ import annotations

import uuid
from functools import cache
from typing import Any

from sqlalchemy import Integer, Select, Uuid, bindparam, case, func, null, select, text, true
from sqlalchemy.dialects.postgresql import JSON, aggregate_order_by
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from quark_messaging.common import (
    ADMIN_ROLES,
    blocked_any,
    blocked_between,
    chat_frame,
    chat_out,
    direct_key,
    load_conversation,
    member_ids,
    now,
    require_admin,
    require_member,
    visible,
    with_membership,
)
from quark_messaging.models import Conversation, Member, Message, User
from quark_messaging.reads import history_page
from quark_messaging.runtime import MessagingRuntime
from quark_messaging.schemas import (
    ChatCreated,
    ChatDetail,
    ChatOut,
    MemberOut,
)
from quark_sdk.errors import (
    Conflict,
    InvalidInput,
    NotFound,
    PermissionDenied,
)
from quark_sdk.outbox import add_event


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
        await rt.hub.publish([user_id, peer_id], chat_frame("chat.created", conv.id, kind="direct"))
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
        refused = await blocked_any(session, user_id, others)
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
    await rt.hub.publish([user_id, *others], chat_frame("chat.created", conv.id, kind=kind))
    return out


async def get_chat(
    session: AsyncSession,
    user_id: uuid.UUID,
    conversation_id: uuid.UUID,
    *,
    max_members: int = 1000,
    messages: int = 0,
    before: int | None = None,
) -> ChatDetail:
    """The conversation as the caller sees it; with `messages` > 0 also its history's latest page of that
    size (or the page older than `before`), as `GET .../messages` answers it: a chat page in one request."""
    # With the latest page of history asked for, its newest message is the chat's latest: no lateral join for it.
    latest_in_history = messages > 0 and before is None
    params = {"caller": user_id, "conversation_id": conversation_id, "max_members": max_members}
    row = (await session.execute(chat_statement(with_latest=not latest_in_history), params)).first()
    if row is None:
        raise NotFound("conversation not found")
    conv, member = visible(row[0], row[1])
    # Who subscribes to a public channel is for its members to see, not for every passer-by (null for them).
    members = [
        MemberOut(user_id=uid, username=name, role=role, last_read_seq=seq, joined_at=joined)
        for uid, name, role, seq, joined in (row[3] or [])
    ]
    history = (
        await history_page(session, conversation_id, before=before, after=None, limit=messages) if messages else None
    )
    base = chat_out(conv, member, user_id, unread=(row[2] or 0) if member else 0,
                    last=None if latest_in_history else row[4])
    if latest_in_history and history is not None and history.items:
        base.last_message = history.items[-1]
    # The fields as they are (a shallow copy): `model_dump()` would turn the last message into a dict to validate again.
    return ChatDetail(**dict(base), members=members, messages=history)


@cache
def chat_statement(*, with_latest: bool) -> Select[Any]:
    """The statement behind a chat's detail, built once (bound: `caller`, `conversation_id`, `max_members`):
    building and hashing a statement this size costs more than running it, on every chat opened.

    One row: the conversation, the caller's membership, their unread count (`unread_counts`' rule), the first
    `max_members` members (by joining) as one JSON array of [user_id, username, role, last_read_seq, joined_at]
    for a caller who is a member (else null) and, `with_latest`, the latest message."""
    caller = bindparam("caller", type_=Uuid)
    unread = (
        select(func.count(Message.id))
        .where(
            Message.conversation_id == Conversation.id,
            Message.seq > Member.last_read_seq,
            Message.deleted_at.is_(None),
            Message.sender_id.is_distinct_from(Member.user_id),
        )
        .correlate(Conversation, Member)
        .scalar_subquery()
    )
    listed = aliased(Member, name="listed")
    first = (
        select(listed.user_id, User.username, listed.role, listed.last_read_seq, listed.joined_at)
        .outerjoin(User, User.user_id == listed.user_id)
        .where(listed.conversation_id == Conversation.id)
        .order_by(listed.joined_at, listed.user_id)
        .limit(bindparam("max_members", type_=Integer))
        .correlate(Conversation)
        .subquery("first_members")
    )
    # Timestamps as UTC ISO text (asyncpg hands them over in UTC too): the answer does not depend on the
    # database session's time zone.
    joined = func.to_char(func.timezone("UTC", first.c.joined_at), 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
    array = func.json_agg(
        aggregate_order_by(
            func.json_build_array(first.c.user_id, first.c.username, first.c.role, first.c.last_read_seq, joined),
            first.c.joined_at,
            first.c.user_id,
        )
    )
    listing = (
        select(func.coalesce(array, text("'[]'::json"), type_=JSON))
        .select_from(first)
        .correlate(Conversation)
        .scalar_subquery()
    )
    members = case((Member.user_id.is_not(None), listing), else_=null()).label("members")
    stmt = with_membership(select(Conversation, Member, unread, members), caller)
    if with_latest:
        latest = aliased(
            Message,
            select(Message)
            .where(Message.conversation_id == Conversation.id)
            .order_by(Message.seq.desc())
            .limit(1)
            .correlate(Conversation)
            .lateral("latest"),
        )
        stmt = stmt.add_columns(latest).outerjoin(latest, true())
    return stmt.where(Conversation.id == bindparam("conversation_id", type_=Uuid))


async def rename(
    rt: MessagingRuntime, session: AsyncSession, user_id: uuid.UUID, conversation_id: uuid.UUID, title: str
) -> ChatOut:
    if len(title) > rt.settings.max_title_chars:
        raise InvalidInput(f"title longer than {rt.settings.max_title_chars} characters", field="title")
    async with session.begin():
        conv, member = await load_conversation(session, conversation_id, user_id, lock=True)
        require_admin(conv, member)
        conv.title = title
        await session.flush()
        out = chat_out(conv, member, user_id)
        recipients = await member_ids(session, conversation_id)
    await rt.hub.publish(recipients, chat_frame("chat.updated", conversation_id, title=title))
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
        conv, member = await load_conversation(session, conversation_id, user_id, lock=True)
        require_admin(conv, member)
        refused = await blocked_any(session, user_id, wanted)
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
        await rt.hub.publish(
            recipients,
            chat_frame("chat.members_added", conversation_id, user_ids=[str(u) for u in new], by=str(user_id)),
        )
    return new


async def subscribe(
    rt: MessagingRuntime, session: AsyncSession, user_id: uuid.UUID, conversation_id: uuid.UUID
) -> ChatOut:
    async with session.begin():
        conv, member = await load_conversation(session, conversation_id, user_id, lock=True)
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
        conv, member = await load_conversation(session, conversation_id, user_id, lock=True)
        m = require_member(member)
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
    await rt.hub.publish(
        recipients, chat_frame("chat.member_removed", conversation_id, user_id=str(target), by=str(user_id))
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
        conv, member = await load_conversation(session, conversation_id, user_id, lock=True)
        m = require_admin(conv, member)
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
    await rt.hub.publish(recipients, chat_frame("chat.role_changed", conversation_id, user_id=str(target), role=role))
