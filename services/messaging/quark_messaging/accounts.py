"""Accounts as messaging knows them: names (for mentions), blocks, and the erasure of a deleted account."""

from __future__ import annotations

import uuid

from sqlalchemy import ARRAY, Text, delete, func, literal, or_, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from quark_messaging.models import Block, Conversation, Member, Message, Notification, User
from quark_messaging.runtime import MessagingRuntime

# What a notification's data holds of its actor (words, name, id): dropped when the actor deletes the account.
PERSONAL_NOTIFICATION_KEYS = ["excerpt", "follower_id", "follower_username", "author_username", "user_id"]


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


async def set_block(session: AsyncSession, blocker: uuid.UUID, blocked: uuid.UUID, on: bool) -> None:
    if on:
        await session.execute(pg_insert(Block).values(blocker_id=blocker, blocked_id=blocked).on_conflict_do_nothing())
    else:
        await session.execute(delete(Block).where(Block.blocker_id == blocker, Block.blocked_id == blocked))


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
    joined = list(await session.scalars(select(Member.conversation_id).where(Member.user_id == user_id)))
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
    # Only the conversations this account was in: a drifted count elsewhere must never cost others their chats.
    if joined:
        await session.execute(delete(Conversation).where(Conversation.id.in_(joined), Conversation.member_count <= 0))
    await session.execute(delete(Notification).where(Notification.user_id == user_id))
    await session.execute(
        update(Notification)
        .where(Notification.actor_id == user_id)
        .values(actor_id=None, data=Notification.data.op("-")(literal(PERSONAL_NOTIFICATION_KEYS, ARRAY(Text))))
    )
    await session.execute(delete(Block).where(or_(Block.blocker_id == user_id, Block.blocked_id == user_id)))
    await session.execute(delete(User).where(User.user_id == user_id))
