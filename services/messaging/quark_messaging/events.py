"""What messaging consumes. It publishes through the outbox (chats.py, sending.py, notifications.py).

* ``replica`` — names (quark.auth.user_registered, quark.user.profile_*), blocks
  (quark.user.blocked / unblocked) and account deletion (quark.user.deleted, quark.auth.user_deleted).
* ``notify`` — events that become notifications: follows, comments (and mentions in them),
  reactions, and messaging's own quark.message.sent (members who are offline; see
  `sending.notify_offline_members`).
* ``push`` — messaging's own quark.notification.created: pushes the stored notification to the
  user's open WebSockets, after the transaction that created it committed (any instance may
  consume it; the delivery subject reaches the instance holding the connection).
"""

from __future__ import annotations

import uuid
from typing import TypeVar

from pydantic import BaseModel, ValidationError
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from quark_messaging import reports
from quark_messaging.accounts import delete_user, remember_user, set_block
from quark_messaging.common import MAX_MENTIONS, MENTION
from quark_messaging.models import Notification, User
from quark_messaging.notifications import create_notification, notification_out
from quark_messaging.runtime import MessagingRuntime
from quark_messaging.schemas import (
    CommentCreated,
    MessageSent,
    ModerationDecided,
    NotificationRef,
    PostReacted,
    ProfileChanged,
    UserBlockChanged,
    UserDeleted,
    UserFollowed,
    UserRegistered,
)
from quark_messaging.sending import notify_offline_members
from quark_sdk.events import CloudEvent, Consumer, PermanentEventError

M = TypeVar("M", bound=BaseModel)

replica = Consumer[MessagingRuntime]("replica")
notify = Consumer[MessagingRuntime]("notify")
push = Consumer[MessagingRuntime]("push", batch_size=100)


def parse(event: CloudEvent, model: type[M]) -> M:
    try:
        return model.model_validate(event.data)
    except ValidationError as exc:
        raise PermanentEventError(f"{event.type} payload invalid: {exc.error_count()} error(s)") from None


# --------------------------------------------------------------------------- replica


@replica.on("quark.moderation.decided")
async def on_moderation_decided(rt: MessagingRuntime, session: AsyncSession, event: CloudEvent) -> None:
    await reports.apply_decision(rt, session, parse(event, ModerationDecided))


@replica.on("quark.auth.user_registered")
async def on_registered(rt: MessagingRuntime, session: AsyncSession, event: CloudEvent) -> None:
    p = parse(event, UserRegistered)
    await remember_user(session, p.user_id, p.username)


@replica.on("quark.user.profile_created", "quark.user.profile_updated")
async def on_profile(rt: MessagingRuntime, session: AsyncSession, event: CloudEvent) -> None:
    p = parse(event, ProfileChanged)
    await remember_user(session, p.user_id, p.username)


@replica.on("quark.user.blocked")
async def on_blocked(rt: MessagingRuntime, session: AsyncSession, event: CloudEvent) -> None:
    p = parse(event, UserBlockChanged)
    await set_block(session, p.blocker_id, p.blocked_id, True)


@replica.on("quark.user.unblocked")
async def on_unblocked(rt: MessagingRuntime, session: AsyncSession, event: CloudEvent) -> None:
    p = parse(event, UserBlockChanged)
    await set_block(session, p.blocker_id, p.blocked_id, False)


@replica.on("quark.user.deleted", "quark.auth.user_deleted")
async def on_user_deleted(rt: MessagingRuntime, session: AsyncSession, event: CloudEvent) -> None:
    p = parse(event, UserDeleted)
    await delete_user(session, p.user_id)


# --------------------------------------------------------------------------- notify


@notify.on("quark.user.followed")
async def on_followed(rt: MessagingRuntime, session: AsyncSession, event: CloudEvent) -> None:
    p = parse(event, UserFollowed)
    if p.follower_username:
        await remember_user(session, p.follower_id, p.follower_username)
    await create_notification(
        session,
        p.followee_id,
        "follow",
        p.follower_id,
        {"follower_id": str(p.follower_id), "follower_username": p.follower_username},
    )


@notify.on("quark.comment.created")
async def on_comment(rt: MessagingRuntime, session: AsyncSession, event: CloudEvent) -> None:
    p = parse(event, CommentCreated)
    data = {
        "post_id": p.post_id,
        "comment_id": p.comment_id,
        "author_username": p.author_username,
        "excerpt": p.body_text[:140],
    }
    told = {p.author_id}
    if p.post_author_id not in told:
        await create_notification(session, p.post_author_id, "comment", p.author_id, data)
        told.add(p.post_author_id)
    if p.parent_author_id is not None and p.parent_author_id not in told:
        await create_notification(session, p.parent_author_id, "reply", p.author_id, data)
        told.add(p.parent_author_id)
    names = list(dict.fromkeys(n.lower().rstrip(".") for n in MENTION.findall(p.body_text)))
    if names:
        rows = await session.scalars(select(User.user_id).where(func.lower(User.username).in_(names[:MAX_MENTIONS])))
        for uid in sorted(set(rows) - told, key=str):
            await create_notification(session, uid, "mention", p.author_id, data)


@notify.on("quark.post.reacted")
async def on_reacted(rt: MessagingRuntime, session: AsyncSession, event: CloudEvent) -> None:
    p = parse(event, PostReacted)
    if p.action != "added":
        return
    await create_notification(
        session,
        p.post_author_id,
        "reaction",
        p.user_id,
        {"post_id": p.post_id, "reaction": p.kind, "user_id": str(p.user_id)},
        group_key=f"reaction:{p.post_id}",
    )


@notify.on("quark.message.sent")
async def on_message_sent(rt: MessagingRuntime, session: AsyncSession, event: CloudEvent) -> None:
    await notify_offline_members(rt, session, parse(event, MessageSent))


# --------------------------------------------------------------------------- push


@push.on("quark.notification.created")
async def on_notification(rt: MessagingRuntime, session: AsyncSession, event: CloudEvent) -> None:
    p = parse(event, NotificationRef)
    n = await session.get(Notification, p.notification_id)
    if n is None or n.read_at is not None:  # gone (account deleted) or already read: nothing to show
        return
    await rt.hub.publish(
        [uuid.UUID(str(p.user_id))],
        {"type": "notification", "notification": notification_out(n).model_dump(mode="json")},
    )
