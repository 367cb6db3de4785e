"""What moderation consumes: every report and flag (→ the queue) and admin actions of other modules (→ the
audit log). It publishes `quark.moderation.decided` through the outbox (decisions.py)."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from quark_moderation import audit
from quark_moderation.queue import Incoming, add_signal
from quark_moderation.runtime import ModerationRuntime
from quark_moderation.schemas import (
    FlaggedIn,
    MediaReportedIn,
    MessageReportedIn,
    PostReportedIn,
    ProfileReportedIn,
)
from quark_sdk.events import CloudEvent, Consumer

intake = Consumer[ModerationRuntime]("intake")  # reports and flags → cases
auditing = Consumer[ModerationRuntime]("audit")  # admin actions → the audit log

# Admin actions of other modules (each names its actor_id): roles, sessions, suspensions, forced resets, the AI's
# moderation thresholds, and the hub's module lifecycle and dead-letter operations. A new one is a line here plus
# the manifest's `consumes`.
AUDITED_EVENTS = (
    "quark.auth.role_changed", "quark.auth.sessions_revoked", "quark.auth.password_reset_forced",
    "quark.user.suspended", "quark.ai.thresholds_changed",
    "quark.hub.module.installed", "quark.hub.module.enabled", "quark.hub.module.disabled",
    "quark.hub.module.traffic_shifted", "quark.hub.module.upgraded", "quark.hub.module.removed",
    "quark.hub.dead_letter_replayed", "quark.hub.dead_letter_discarded",
)


@intake.on("quark.post.reported")
async def on_post_reported(rt: ModerationRuntime, session: AsyncSession, event: CloudEvent) -> None:
    p = event.payload(PostReportedIn)
    context = {k: v for k, v in {"title": p.title, "excerpt": p.excerpt,
                                 "post_id": p.post_id or (p.target_id if p.target_type == "post" else None)}.items()
               if v}
    await add_signal(rt, session, Incoming(
        kind=p.target_type, target_id=p.target_id, source="user", external_id=f"blog:{p.report_id}",
        reason=p.reason, author_id=p.author_id, reporter_id=p.reporter_id, context=context))


@intake.on("quark.ai.moderation_flagged")
async def on_flagged(rt: ModerationRuntime, session: AsyncSession, event: CloudEvent) -> None:
    p = event.payload(FlaggedIn)
    context = {"preview": p.preview} if p.preview else {}
    if p.target_type == "post":
        context["post_id"] = p.target_id
    await add_signal(rt, session, Incoming(
        kind=p.target_type, target_id=p.target_id, source="ai", external_id=p.run_id,
        reason=p.reason or ("automatic flag: " + ", ".join(p.labels)), author_id=p.author_id, score=p.score,
        labels=p.labels, context=context))


@intake.on("quark.message.reported")
async def on_message_reported(rt: ModerationRuntime, session: AsyncSession, event: CloudEvent) -> None:
    p = event.payload(MessageReportedIn)
    thread = [line.model_dump(mode="json") for line in p.thread]
    await add_signal(rt, session, Incoming(
        kind="chat_message", target_id=p.message_id, source="user", external_id=f"messaging:{p.report_id}",
        reason=p.reason, author_id=p.author_id, reporter_id=p.reporter_id,
        context={"chat_id": p.chat_id, "thread": thread}))


@intake.on("quark.user.profile_reported")
async def on_profile_reported(rt: ModerationRuntime, session: AsyncSession, event: CloudEvent) -> None:
    p = event.payload(ProfileReportedIn)
    context = {k: v for k, v in {"username": p.username, "display_name": p.display_name, "bio": p.bio}.items() if v}
    await add_signal(rt, session, Incoming(
        kind="profile", target_id=p.user_id, source="user", external_id=f"user:{p.report_id}", reason=p.reason,
        author_id=p.user_id, reporter_id=p.reporter_id, context=context))


@intake.on("quark.media.reported")
async def on_media_reported(rt: ModerationRuntime, session: AsyncSession, event: CloudEvent) -> None:
    p = event.payload(MediaReportedIn)
    context = {k: v for k, v in {"content_type": p.content_type, "url": p.url}.items() if v}
    await add_signal(rt, session, Incoming(
        kind="media", target_id=p.media_id, source="user", external_id=f"media:{p.report_id}", reason=p.reason,
        author_id=p.owner_id, reporter_id=p.reporter_id, context=context))


@auditing.on(*AUDITED_EVENTS)
async def on_admin_action(rt: ModerationRuntime, session: AsyncSession, event: CloudEvent) -> None:
    await audit.record_event(rt, session, event)
