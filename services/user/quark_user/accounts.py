"""What only admins do: list accounts, suspend and reinstate them."""

from __future__ import annotations

from sqlalchemy import func, literal, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from quark_sdk.errors import Conflict, InvalidInput
from quark_sdk.outbox import add_event
from quark_user.common import (
    _by_username,
    _live,
    _log,
    cursor_for,
    now,
    seq_after,
)
from quark_user.models import Profile
from quark_user.schemas import (
    UserSuspended,
)
from quark_user.validation import (
    _escape_like,
    _has_control,
    _text_param,
)


async def admin_list(session: AsyncSession, *, q: str | None, suspended: bool | None, role: str | None,
                     verified: bool | None, limit: int, cursor: str | None) -> tuple[list[Profile], str | None]:
    """Newest accounts first; filters combine."""
    after = seq_after("admin", cursor)
    stmt = select(Profile).where(_live())
    if q is not None and _text_param(q, "q").strip():
        pattern = func.lower(literal(_escape_like(q.strip().removeprefix("@")) + "%"))
        stmt = stmt.where(or_(func.lower(Profile.username).like(pattern, escape="\\"),
                              func.lower(Profile.display_name).like(pattern, escape="\\")))
    if suspended is not None:
        stmt = stmt.where(Profile.suspended.is_(suspended))
    if verified is not None:
        stmt = stmt.where(Profile.verified.is_(verified))
    if role is not None:
        stmt = stmt.where(Profile.roles.contains([_text_param(role, "role")]))
    if after is not None:
        stmt = stmt.where(Profile.seq < after)
    async with session.begin():
        rows = list((await session.scalars(stmt.order_by(Profile.seq.desc()).limit(limit + 1))).all())
    next_cursor = cursor_for("admin", rows[limit - 1].seq) if len(rows) > limit else None
    return rows[:limit], next_cursor


async def set_suspended(session: AsyncSession, *, actor_id: str, username: str, suspended: bool,
                        reason: str | None) -> Profile:
    reason = (reason or "").strip() or None
    if reason is not None and _has_control(reason, allowed="\n"):
        raise InvalidInput("reason must not contain control characters", field="reason")
    async with session.begin():
        profile = await _by_username(session, username, lock=True)
        if suspended and str(profile.user_id) == actor_id:
            raise InvalidInput("you cannot suspend yourself", field="username")
        if profile.suspended == suspended:
            raise Conflict(f"{profile.username} is {'already' if suspended else 'not'} suspended")
        profile.suspended = suspended
        profile.suspended_reason = reason if suspended else None
        profile.suspended_at = now() if suspended else None
        profile.suspended_by = actor_id[:64] if suspended else None
        await add_event(session, UserSuspended(user_id=str(profile.user_id), suspended=suspended,
                                               reason=reason if suspended else None, actor_id=actor_id),
                        subject=str(profile.user_id))
        _log(session, profile.user_id, "suspended" if suspended else "unsuspended",
             reason=reason if suspended else None)
        await session.flush()
    return profile
