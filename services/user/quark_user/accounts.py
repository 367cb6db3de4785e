"""What only admins do: list accounts, suspend and reinstate them; and the job that ends timed suspensions."""

from __future__ import annotations

from datetime import datetime, timedelta

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
    MAX_SUSPENSION_HOURS,
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
                        reason: str | None, duration_hours: int | None = None,
                        until: datetime | None = None) -> Profile:
    """Suspend (until reinstated, for `duration_hours`, or until `until`) or reinstate an account."""
    reason = (reason or "").strip() or None
    if reason is not None and _has_control(reason, allowed="\n"):
        raise InvalidInput("reason must not contain control characters", field="reason")
    started = now()
    if duration_hours is not None:
        until = started + timedelta(hours=duration_hours)
    elif until is not None:
        if until <= started:
            raise InvalidInput("until must be in the future", field="until")
        if until > started + timedelta(hours=MAX_SUSPENSION_HOURS):
            raise InvalidInput(f"until must be within {MAX_SUSPENSION_HOURS // 24} days", field="until")
    async with session.begin():
        profile = await _by_username(session, username, lock=True)
        if suspended and str(profile.user_id) == actor_id:
            raise InvalidInput("you cannot suspend yourself", field="username")
        if profile.suspended == suspended:
            raise Conflict(f"{profile.username} is {'already' if suspended else 'not'} suspended")
        if not suspended:
            await reinstate(session, profile, actor_id=actor_id, reason=None)
        else:
            profile.suspended = True
            profile.suspended_reason = reason
            profile.suspended_at = started
            profile.suspended_by = actor_id[:64]
            profile.suspended_until = until
            await add_event(session, UserSuspended(user_id=str(profile.user_id), suspended=True, reason=reason,
                                                   actor_id=actor_id), subject=str(profile.user_id))
            _log(session, profile.user_id, "suspended", reason=reason,
                 until=until.isoformat() if until else None)
        await session.flush()
    return profile


async def reinstate(session: AsyncSession, profile: Profile, *, actor_id: str, reason: str | None) -> None:
    """Clear a (locked) profile's suspension and tell auth, inside the caller's transaction: the admin's
    unsuspend and the expiry job both end a suspension through here."""
    profile.suspended = False
    profile.suspended_reason = profile.suspended_at = profile.suspended_by = profile.suspended_until = None
    await add_event(session, UserSuspended(user_id=str(profile.user_id), suspended=False, reason=reason,
                                           actor_id=actor_id), subject=str(profile.user_id))
    _log(session, profile.user_id, "unsuspended", reason=reason)


SYSTEM_ACTOR, EXPIRED_REASON = "system", "suspension ended"


async def lift_expired_suspensions(session: AsyncSession, *, at: datetime | None = None, batch: int = 500) -> int:
    """Reinstate accounts whose timed suspension ended by `at` (default: now); returns how many.

    One transaction per account: the row is taken with FOR UPDATE SKIP LOCKED and re-checked by the
    WHERE clause, so several instances running this at once never lift (or announce) one twice, and a
    run that finds nothing changes nothing. `batch` bounds one run; the next run continues."""
    at = at or now()
    lifted = 0
    for _ in range(batch):
        async with session.begin():
            profile = await session.scalar(
                select(Profile).where(Profile.suspended.is_(True), Profile.suspended_until.is_not(None),
                                      Profile.suspended_until <= at, Profile.deleted_at.is_(None))
                .order_by(Profile.suspended_until).limit(1).with_for_update(skip_locked=True))
            if profile is None:
                return lifted
            await reinstate(session, profile, actor_id=SYSTEM_ACTOR, reason=EXPIRED_REASON)
        lifted += 1
    return lifted
