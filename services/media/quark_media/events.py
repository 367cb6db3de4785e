"""What the media service consumes; it publishes through the outbox in service.py.

"Attached" (kept by the orphan sweep) is learnt from the modules that use media: a published or
edited post lists `media_ids` (blog), a profile carries its avatar's `media_id` (user). Only media
owned by the post's author or the profile's user is marked. Account deletion (auth) removes
everything the account uploaded.
"""

from typing import TypeVar

from pydantic import BaseModel, ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from quark_media import reports, service
from quark_media.runtime import MediaRuntime
from quark_media.schemas import AuthUserDeleted, ModerationDecided, PostMedia, ProfileUpdated
from quark_sdk.events import CloudEvent, Consumer, PermanentEventError

M = TypeVar("M", bound=BaseModel)

accounts = Consumer[MediaRuntime]("accounts")  # quark.auth.user_deleted → remove the account's media
usage = Consumer[MediaRuntime]("usage")  # quark.post.* / quark.user.profile_updated → media attached


def parse(event: CloudEvent, model: type[M]) -> M:
    try:
        return model.model_validate(event.data)
    except ValidationError as exc:
        raise PermanentEventError(f"{event.type} payload does not match: {exc.errors()[:3]}") from exc


@accounts.on("quark.auth.user_deleted")
async def on_user_deleted(rt: MediaRuntime, session: AsyncSession, event: CloudEvent) -> None:
    await service.apply_user_deleted(rt, session, parse(event, AuthUserDeleted))


@usage.on("quark.post.published", "quark.post.updated")
async def on_post_media(rt: MediaRuntime, session: AsyncSession, event: CloudEvent) -> None:
    await service.apply_post_media(session, parse(event, PostMedia))


@usage.on("quark.user.profile_updated")
async def on_profile_updated(rt: MediaRuntime, session: AsyncSession, event: CloudEvent) -> None:
    await service.apply_profile_updated(session, parse(event, ProfileUpdated))


@accounts.on("quark.moderation.decided")
async def on_moderation_decided(rt: MediaRuntime, session: AsyncSession, event: CloudEvent) -> None:
    await reports.apply_decision(rt, session, parse(event, ModerationDecided))
