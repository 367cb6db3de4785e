"""Reporting an uploaded file to the moderation queue, and applying the queue's `delete` decisions."""

from __future__ import annotations

import uuid

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from quark_media.models import Media, MediaReport
from quark_media.runtime import MediaRuntime
from quark_media.schemas import MediaReported, ModerationDecided, ReportOut
from quark_media.service import _delete_objects, _remove_rows, _visible, now, parse_media_id, variant_url
from quark_sdk.errors import Conflict, InvalidInput, NotFound
from quark_sdk.outbox import add_event

RESOLUTIONS = {"dismiss": "dismissed", "hide": "hidden", "delete": "deleted", "warn": "warned",
               "suspend": "suspended"}
REPORT_LIMIT, REPORT_WINDOW = 20, 3600.0  # reports per person per hour


async def report_media(rt: MediaRuntime, session: AsyncSession, reporter: uuid.UUID, media_id: str,
                       reason: str) -> ReportOut:
    cleaned = "".join(c if c >= " " or c == "\n" else " " for c in reason).strip()[:1000]
    if not cleaned:
        raise InvalidInput("reason is empty", field="reason")
    await rt.limiter.check(f"report:{reporter}", limit=REPORT_LIMIT, window=REPORT_WINDOW,
                           detail=f"too many reports: at most {REPORT_LIMIT} per hour")
    try:
        async with session.begin():
            media = await session.get(Media, parse_media_id(media_id))
            if media is None or not _visible(media, reporter, False):
                raise NotFound("no such media")
            if media.owner_id == reporter:
                raise InvalidInput("you cannot report your own file", field="media_id")
            row = MediaReport(id=uuid.uuid4(), media_id=media.id, reporter_id=reporter, reason=cleaned,
                              status="open", created_at=now())
            session.add(row)
            await session.flush()
            preview = next(iter(media.variants or {}), None)
            await add_event(session, MediaReported(
                report_id=str(row.id), media_id=str(media.id), owner_id=str(media.owner_id),
                reporter_id=str(reporter), reason=cleaned, content_type=media.mime_type,
                url=variant_url(rt, media.id, preview) if preview else None,
            ), subject=str(media.id))
    except IntegrityError as exc:
        if "uq_media_reports_open" in str(exc.orig):
            raise Conflict("you have already reported this file", code="already-reported") from None
        raise
    return ReportOut(id=row.id, media_id=row.media_id, status=row.status, created_at=row.created_at)


async def apply_decision(rt: MediaRuntime, session: AsyncSession, d: ModerationDecided) -> None:
    """Inside the consumer's transaction: `delete` removes the file (row, quota, `quark.media.deleted`, then
    its objects); every decision closes the open reports on it."""
    if d.module != "media" or d.kind != "media":
        return
    try:
        media_id = uuid.UUID(d.target_id)
    except ValueError:
        return
    await session.execute(
        update(MediaReport).where(MediaReport.media_id == media_id, MediaReport.status == "open")
        .values(status="resolved", resolution=RESOLUTIONS[d.action], resolved_at=now()))
    if d.action != "delete":
        return
    media = await session.scalar(select(Media).where(Media.id == media_id).with_for_update())
    if media is None:
        return
    prefixes = await _remove_rows(session, [media], "moderation")
    await session.flush()
    await _delete_objects(rt, prefixes)
