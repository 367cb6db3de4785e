"""The moderation queue's sanctions on an author (quark.moderation.decided): a warning is recorded in the
account's activity; a suspension suspends the account as an admin's would (`quark.user.suspended`, which auth
enforces: no login, sessions revoked), naming the moderator and the end of the suspension, which the
expiry job (accounts.lift_expired_suspensions) lifts when it has passed."""

from __future__ import annotations

import uuid

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from quark_sdk.errors import Conflict, InvalidInput
from quark_sdk.outbox import add_event
from quark_user.common import _by_username, _log, now
from quark_user.models import Profile, ProfileReport
from quark_user.runtime import UserRuntime
from quark_user.schemas import ModerationDecided, ProfileReported, UserSuspended

RESOLUTIONS = {"dismiss": "dismissed", "hide": "hidden", "delete": "deleted", "warn": "warned",
               "suspend": "suspended"}
REPORT_LIMIT, REPORT_WINDOW = 20, 3600.0  # reports per person per hour


async def report_profile(rt: UserRuntime, session: AsyncSession, reporter: uuid.UUID, username: str,
                         reason: str) -> ProfileReport:
    cleaned = "".join(c if c >= " " or c == "\n" else " " for c in reason).strip()[:1000]
    if not cleaned:
        raise InvalidInput("reason is empty", field="reason")
    await rt.limiter.check(f"report:{reporter}", limit=REPORT_LIMIT, window=REPORT_WINDOW,
                           detail=f"too many reports: at most {REPORT_LIMIT} per hour")
    try:
        async with session.begin():
            profile = await _by_username(session, username)
            if profile.user_id == reporter:
                raise InvalidInput("you cannot report yourself", field="username")
            row = ProfileReport(id=uuid.uuid4(), user_id=profile.user_id, reporter_id=reporter, reason=cleaned,
                                status="open", created_at=now())
            session.add(row)
            await session.flush()
            await add_event(session, ProfileReported(
                report_id=str(row.id), user_id=str(profile.user_id), username=profile.username,
                display_name=profile.display_name, bio=profile.bio[:4000], reporter_id=str(reporter),
                reason=cleaned), subject=str(profile.user_id))
    except IntegrityError as exc:
        if "uq_profile_reports_open" in str(exc.orig):
            raise Conflict("you have already reported this profile", code="already-reported") from None
        raise
    return row


async def apply_decision(session: AsyncSession, d: ModerationDecided) -> None:
    """Inside the consumer's transaction. Unknown or deleted authors, and other actions, change nothing."""
    if d.kind == "profile":
        try:
            reported = uuid.UUID(d.target_id)
        except ValueError:
            reported = None
        if reported is not None:
            await session.execute(
                update(ProfileReport).where(ProfileReport.user_id == reported, ProfileReport.status == "open")
                .values(status="resolved", resolution=RESOLUTIONS[d.action], resolved_at=now()))
    if d.action not in ("warn", "suspend") or not d.author_id:
        return
    try:
        author = uuid.UUID(d.author_id)
    except ValueError:
        return
    profile = await session.scalar(select(Profile).where(Profile.user_id == author).with_for_update())
    if profile is None or profile.deleted_at is not None:
        return
    until = d.until.isoformat() if d.until else None
    if d.action == "warn":
        _log(session, profile.user_id, "warned", reason=d.reason, by=d.moderator_id, decision_id=d.decision_id)
        return
    if d.until is not None and d.until <= now():
        return  # delivered after its end (a long outage): there is nothing left to enforce
    if profile.suspended:
        # Already suspended (by an admin or an earlier decision): that suspension stands, but a timed one
        # is extended when this decision ends later (or never); a suspension is never shortened here.
        if profile.suspended_until is not None and (d.until is None or d.until > profile.suspended_until):
            profile.suspended_until = d.until
            _log(session, profile.user_id, "suspension_extended", until=until, decision_id=d.decision_id)
        return
    reason = f"{d.reason} (until {until})" if until else d.reason
    profile.suspended = True
    profile.suspended_reason = reason[:500]
    profile.suspended_at = now()
    profile.suspended_by = d.moderator_id[:64]
    profile.suspended_until = d.until  # null: until reinstated; else the expiry job lifts it
    await add_event(session, UserSuspended(user_id=str(profile.user_id), suspended=True, reason=reason[:500],
                                           actor_id=d.moderator_id), subject=str(profile.user_id))
    _log(session, profile.user_id, "suspended", reason=d.reason, until=until, decision_id=d.decision_id)
