"""What the AI service consumes. It publishes through the outbox (agents.py, service.py).

* ``agents`` — blog content (quark.post.published / updated, quark.comment.created / updated) runs the
  moderation, tagging and recommendations agents; the post lifecycle (unpublished, deleted,
  hidden, restored) keeps the recommendation corpus honest.
* ``signals`` — reactions and follows feed the recommendations; blocks, mutes, profile privacy and
  suspensions keep them within the blog's visibility rules (audience.py); a deleted user is forgotten; the
  moderation queue's decisions review the automatic flags they concern (upheld or overruled).

A payload that does not fit is dead-lettered at once (PermanentEventError), never retried.
"""

from __future__ import annotations

from typing import TypeVar

from pydantic import BaseModel, ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from quark_ai import agents, audience, service
from quark_ai.runtime import AIRuntime
from quark_ai.schemas import (
    BlockChanged,
    CommentContent,
    FollowChanged,
    MuteChanged,
    PostContent,
    PostReacted,
    PostRef,
    ProfileChanged,
    QueueDecision,
    SuspensionChanged,
    UserDeleted,
)
from quark_sdk.events import CloudEvent, Consumer, PermanentEventError

M = TypeVar("M", bound=BaseModel)

agents_consumer = Consumer[AIRuntime]("agents", batch_size=50)
signals_consumer = Consumer[AIRuntime]("signals")


def parse(event: CloudEvent, model: type[M]) -> M:
    try:
        return model.model_validate(event.data)
    except ValidationError as exc:
        raise PermanentEventError(f"{event.type} payload invalid: {exc.error_count()} error(s)") from None


@agents_consumer.on("quark.post.published")
async def on_post_published(rt: AIRuntime, session: AsyncSession, event: CloudEvent) -> None:
    await agents.on_post_content(
        rt, session, parse(event, PostContent), event_id=event.id, published=True
    )


@agents_consumer.on("quark.post.updated")
async def on_post_updated(rt: AIRuntime, session: AsyncSession, event: CloudEvent) -> None:
    await agents.on_post_content(
        rt, session, parse(event, PostContent), event_id=event.id, published=False
    )


@agents_consumer.on("quark.comment.created")
async def on_comment_created(rt: AIRuntime, session: AsyncSession, event: CloudEvent) -> None:
    await agents.on_comment(rt, session, parse(event, CommentContent), event_id=event.id)


@agents_consumer.on("quark.comment.updated")
async def on_comment_updated(rt: AIRuntime, session: AsyncSession, event: CloudEvent) -> None:
    """An edit is moderated like a new comment: benign text edited into toxic text is flagged (#16 item 5)."""
    await agents.on_comment(rt, session, parse(event, CommentContent), event_id=event.id)


@agents_consumer.on("quark.post.unpublished")
async def on_post_unpublished(rt: AIRuntime, session: AsyncSession, event: CloudEvent) -> None:
    await agents.set_post_state(session, parse(event, PostRef).post_id, active=False)


@agents_consumer.on("quark.post.hidden")
async def on_post_hidden(rt: AIRuntime, session: AsyncSession, event: CloudEvent) -> None:
    await agents.set_post_state(session, parse(event, PostRef).post_id, hidden=True)


@agents_consumer.on("quark.post.restored")
async def on_post_restored(rt: AIRuntime, session: AsyncSession, event: CloudEvent) -> None:
    await agents.set_post_state(session, parse(event, PostRef).post_id, hidden=False)


@agents_consumer.on("quark.post.deleted")
async def on_post_deleted(rt: AIRuntime, session: AsyncSession, event: CloudEvent) -> None:
    await agents.delete_post(session, parse(event, PostRef).post_id)


@signals_consumer.on("quark.post.reacted")
async def on_post_reacted(rt: AIRuntime, session: AsyncSession, event: CloudEvent) -> None:
    p = parse(event, PostReacted)
    await agents.react(
        session, user_id=p.user_id, post_id=p.post_id, kind=p.kind, added=p.action == "added", at=event.time
    )


@signals_consumer.on("quark.user.followed")
async def on_followed(rt: AIRuntime, session: AsyncSession, event: CloudEvent) -> None:
    p = parse(event, FollowChanged)
    await agents.follow(session, p.follower_id, p.followee_id, on=True)


@signals_consumer.on("quark.user.unfollowed")
async def on_unfollowed(rt: AIRuntime, session: AsyncSession, event: CloudEvent) -> None:
    p = parse(event, FollowChanged)
    await agents.follow(session, p.follower_id, p.followee_id, on=False)


@signals_consumer.on("quark.user.blocked")
async def on_blocked(rt: AIRuntime, session: AsyncSession, event: CloudEvent) -> None:
    p = parse(event, BlockChanged)
    await audience.block(session, p.blocker_id, p.blocked_id, on=True)


@signals_consumer.on("quark.user.unblocked")
async def on_unblocked(rt: AIRuntime, session: AsyncSession, event: CloudEvent) -> None:
    p = parse(event, BlockChanged)
    await audience.block(session, p.blocker_id, p.blocked_id, on=False)


@signals_consumer.on("quark.user.muted")
async def on_muted(rt: AIRuntime, session: AsyncSession, event: CloudEvent) -> None:
    p = parse(event, MuteChanged)
    await audience.mute(session, p.muter_id, p.muted_id, on=True)


@signals_consumer.on("quark.user.unmuted")
async def on_unmuted(rt: AIRuntime, session: AsyncSession, event: CloudEvent) -> None:
    p = parse(event, MuteChanged)
    await audience.mute(session, p.muter_id, p.muted_id, on=False)


@signals_consumer.on("quark.user.profile_updated")
async def on_profile_updated(rt: AIRuntime, session: AsyncSession, event: CloudEvent) -> None:
    p = parse(event, ProfileChanged)
    await audience.set_privacy(session, p.user_id, p.privacy)


@signals_consumer.on("quark.user.suspended")
async def on_suspended(rt: AIRuntime, session: AsyncSession, event: CloudEvent) -> None:
    p = parse(event, SuspensionChanged)
    await audience.set_suspended(session, p.user_id, p.suspended)


@signals_consumer.on("quark.user.deleted")
async def on_user_deleted(rt: AIRuntime, session: AsyncSession, event: CloudEvent) -> None:
    await agents.forget_user(session, parse(event, UserDeleted).user_id)


@signals_consumer.on("quark.moderation.decided")
async def on_queue_decision(rt: AIRuntime, session: AsyncSession, event: CloudEvent) -> None:
    await service.apply_queue_decision(rt, session, parse(event, QueueDecision))
