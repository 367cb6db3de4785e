"""What blog consumes. It publishes through the outbox in the service modules.

* ``replica`` — users, follows, blocks, suspensions and deletions (quark.auth.*, quark.user.*),
  automatic moderation flags (quark.ai.*), the moderation queue's decisions
  (quark.moderation.decided) and deleted media (quark.media.*).
* ``fanout`` — blog's own post events: each one re-syncs that post's place in the home
  timelines (added to the followers' warm timelines, or removed) from the post's current state.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from quark_blog import replica
from quark_blog.moderation import apply_decision, apply_flag
from quark_blog.runtime import BlogRuntime
from quark_blog.schemas import (
    MediaDeleted,
    ModerationDecided,
    ModerationFlagged,
    PostRef,
    ProfileCreated,
    ProfileUpdated,
    UserBlockChanged,
    UserDeletedEvent,
    UserFollowed,
    UserRegistered,
    UserSuspended,
    UserUnfollowed,
)
from quark_sdk.events import CloudEvent, Consumer

replica_consumer = Consumer[BlogRuntime]("replica")
fanout_consumer = Consumer[BlogRuntime]("fanout", batch_size=100)


@replica_consumer.on("quark.auth.user_registered")
async def on_user_registered(rt: BlogRuntime, session: AsyncSession, event: CloudEvent) -> None:
    p = event.payload(UserRegistered)
    await replica.seed_author(session, p.user_id, p.username, p.display_name)


@replica_consumer.on("quark.user.profile_created")
async def on_profile_created(rt: BlogRuntime, session: AsyncSession, event: CloudEvent) -> None:
    p = event.payload(ProfileCreated)
    await replica.upsert_author(session, p.user_id, p.username, p.display_name)


@replica_consumer.on("quark.user.profile_updated")
async def on_profile_updated(rt: BlogRuntime, session: AsyncSession, event: CloudEvent) -> None:
    p = event.payload(ProfileUpdated)
    await replica.upsert_author(session, p.user_id, p.username, p.display_name, p.privacy)


@replica_consumer.on("quark.user.followed")
async def on_followed(rt: BlogRuntime, session: AsyncSession, event: CloudEvent) -> None:
    p = event.payload(UserFollowed)
    for uid, name in ((p.follower_id, p.follower_username), (p.followee_id, p.followee_username)):
        if name:
            await replica.seed_author(session, uid, name, None)
    await replica.follow(rt, session, p.follower_id, p.followee_id)


@replica_consumer.on("quark.user.unfollowed")
async def on_unfollowed(rt: BlogRuntime, session: AsyncSession, event: CloudEvent) -> None:
    p = event.payload(UserUnfollowed)
    await replica.unfollow(rt, session, p.follower_id, p.followee_id)


@replica_consumer.on("quark.user.blocked")
async def on_blocked(rt: BlogRuntime, session: AsyncSession, event: CloudEvent) -> None:
    p = event.payload(UserBlockChanged)
    await replica.block(rt, session, p.blocker_id, p.blocked_id)


@replica_consumer.on("quark.user.unblocked")
async def on_unblocked(rt: BlogRuntime, session: AsyncSession, event: CloudEvent) -> None:
    p = event.payload(UserBlockChanged)
    await replica.unblock(session, p.blocker_id, p.blocked_id)


@replica_consumer.on("quark.user.suspended")
async def on_suspended(rt: BlogRuntime, session: AsyncSession, event: CloudEvent) -> None:
    p = event.payload(UserSuspended)
    await replica.set_suspended(session, p.user_id, p.suspended)


@replica_consumer.on("quark.user.deleted")
async def on_user_deleted(rt: BlogRuntime, session: AsyncSession, event: CloudEvent) -> None:
    p = event.payload(UserDeletedEvent)
    await replica.delete_user(rt, session, p.user_id)


@replica_consumer.on("quark.ai.moderation_flagged")
async def on_flagged(rt: BlogRuntime, session: AsyncSession, event: CloudEvent) -> None:
    p = event.payload(ModerationFlagged)
    await apply_flag(rt, session, p)


@replica_consumer.on("quark.moderation.decided")
async def on_decided(rt: BlogRuntime, session: AsyncSession, event: CloudEvent) -> None:
    await apply_decision(rt, session, event.payload(ModerationDecided))


@replica_consumer.on("quark.media.deleted")
async def on_media_deleted(rt: BlogRuntime, session: AsyncSession, event: CloudEvent) -> None:
    p = event.payload(MediaDeleted)
    await replica.detach_media(session, p.media_id)


@fanout_consumer.on(
    "quark.post.published",
    "quark.post.updated",
    "quark.post.unpublished",
    "quark.post.deleted",
    "quark.post.hidden",
    "quark.post.restored",
)
async def on_post_changed(rt: BlogRuntime, session: AsyncSession, event: CloudEvent) -> None:
    p = event.payload(PostRef)
    await replica.sync_post(rt, session, p.post_id)
