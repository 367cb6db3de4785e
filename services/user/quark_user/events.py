"""What the user service consumes; it publishes through the outbox (the domain modules).

Consumed payloads are parsed with this service's own (unregistered) models; a payload that
does not fit them can never succeed, so it is dead-lettered at once instead of retried.
"""

from sqlalchemy.ext.asyncio import AsyncSession

from quark_sdk.events import CloudEvent, Consumer
from quark_user import consumed, sanctions
from quark_user.runtime import UserRuntime
from quark_user.schemas import (
    AuthPasswordChanged,
    AuthRoleChanged,
    AuthUserDeleted,
    AuthUserLoggedIn,
    AuthUserRegistered,
    AuthUserVerified,
    MediaDeleted,
    MediaProcessed,
    ModerationDecided,
)

accounts = Consumer[UserRuntime]("accounts")  # quark.auth.* → profiles, roles, activity, deletion
avatars = Consumer[UserRuntime]("avatars")  # quark.media.* → avatar variants


@accounts.on("quark.auth.user_registered")
async def on_user_registered(rt: UserRuntime, session: AsyncSession, event: CloudEvent) -> None:
    await consumed.apply_user_registered(session, event.payload(AuthUserRegistered))


@accounts.on("quark.auth.user_verified")
async def on_user_verified(rt: UserRuntime, session: AsyncSession, event: CloudEvent) -> None:
    await consumed.apply_user_verified(session, event.payload(AuthUserVerified))


@accounts.on("quark.auth.user_logged_in")
async def on_user_logged_in(rt: UserRuntime, session: AsyncSession, event: CloudEvent) -> None:
    await consumed.apply_user_logged_in(session, event.payload(AuthUserLoggedIn))


@accounts.on("quark.auth.password_changed")
async def on_password_changed(rt: UserRuntime, session: AsyncSession, event: CloudEvent) -> None:
    await consumed.apply_password_changed(session, event.payload(AuthPasswordChanged))


@accounts.on("quark.auth.role_changed")
async def on_role_changed(rt: UserRuntime, session: AsyncSession, event: CloudEvent) -> None:
    await consumed.apply_role_changed(session, event.payload(AuthRoleChanged))


@accounts.on("quark.auth.user_deleted")
async def on_user_deleted(rt: UserRuntime, session: AsyncSession, event: CloudEvent) -> None:
    await consumed.apply_user_deleted(session, event.payload(AuthUserDeleted))


@avatars.on("quark.media.processed")
async def on_media_processed(rt: UserRuntime, session: AsyncSession, event: CloudEvent) -> None:
    await consumed.apply_media_processed(session, event.payload(MediaProcessed))


@avatars.on("quark.media.deleted")
async def on_media_deleted(rt: UserRuntime, session: AsyncSession, event: CloudEvent) -> None:
    await consumed.apply_media_deleted(session, event.payload(MediaDeleted))


@accounts.on("quark.moderation.decided")
async def on_moderation_decided(rt: UserRuntime, session: AsyncSession, event: CloudEvent) -> None:
    await sanctions.apply_decision(session, event.payload(ModerationDecided))
