"""What the user service consumes; it publishes through the outbox in service.py.

Consumed payloads are parsed with this service's own (unregistered) models; a payload that
does not fit them can never succeed, so it is dead-lettered at once instead of retried.
"""

from typing import TypeVar

from pydantic import BaseModel, ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from quark_sdk.events import CloudEvent, Consumer, PermanentEventError
from quark_user import service
from quark_user.schemas import (
    AuthPasswordChanged,
    AuthRoleChanged,
    AuthUserDeleted,
    AuthUserLoggedIn,
    AuthUserRegistered,
    AuthUserVerified,
    MediaDeleted,
    MediaProcessed,
)

M = TypeVar("M", bound=BaseModel)

accounts = Consumer("accounts")  # quark.auth.* → profiles, roles, activity, deletion
avatars = Consumer("avatars")  # quark.media.* → avatar variants


def parse(event: CloudEvent, model: type[M]) -> M:
    try:
        # Exactly what `event.payload(model)` does; its signature only admits registered EventPayload classes.
        return model.model_validate(event.data)
    except ValidationError as exc:
        raise PermanentEventError(f"{event.type} payload does not match: {exc.errors()[:3]}") from exc


@accounts.on("quark.auth.user_registered")
async def on_user_registered(session: AsyncSession, event: CloudEvent) -> None:
    await service.apply_user_registered(session, parse(event, AuthUserRegistered))


@accounts.on("quark.auth.user_verified")
async def on_user_verified(session: AsyncSession, event: CloudEvent) -> None:
    await service.apply_user_verified(session, parse(event, AuthUserVerified))


@accounts.on("quark.auth.user_logged_in")
async def on_user_logged_in(session: AsyncSession, event: CloudEvent) -> None:
    await service.apply_user_logged_in(session, parse(event, AuthUserLoggedIn))


@accounts.on("quark.auth.password_changed")
async def on_password_changed(session: AsyncSession, event: CloudEvent) -> None:
    await service.apply_password_changed(session, parse(event, AuthPasswordChanged))


@accounts.on("quark.auth.role_changed")
async def on_role_changed(session: AsyncSession, event: CloudEvent) -> None:
    await service.apply_role_changed(session, parse(event, AuthRoleChanged))


@accounts.on("quark.auth.user_deleted")
async def on_user_deleted(session: AsyncSession, event: CloudEvent) -> None:
    await service.apply_user_deleted(session, parse(event, AuthUserDeleted))


@avatars.on("quark.media.processed")
async def on_media_processed(session: AsyncSession, event: CloudEvent) -> None:
    await service.apply_media_processed(session, parse(event, MediaProcessed))


@avatars.on("quark.media.deleted")
async def on_media_deleted(session: AsyncSession, event: CloudEvent) -> None:
    await service.apply_media_deleted(session, parse(event, MediaDeleted))
