"""Deliver one requested mail: render, send, record. Plain Python, no HTTP types.

Sending happens inside the consumer's transaction, before the inbox row commits: a mail whose
commit then fails is sent again on redelivery (at least once — a duplicate mail beats a lost one).
"""

from __future__ import annotations

import logging

from sqlalchemy.ext.asyncio import AsyncSession

from quark_mailer.models import SentMail, SentSms
from quark_mailer.render import UnknownMailKind
from quark_mailer.runtime import MailerRuntime
from quark_mailer.schemas import EmailRequestedIn, SmsRequestedIn
from quark_mailer.sms import Sms, UnknownSmsKind, render
from quark_mailer.smtp import PermanentDeliveryError
from quark_sdk.events import PermanentEventError

log = logging.getLogger("quark.mailer")

LINK_PATHS = {"verify_email": "verify-email", "reset_password": "reset-password"}


def link_for(rt: MailerRuntime, request: EmailRequestedIn) -> str:
    """The link auth built; for a producer that sent none, the station's page for that kind."""
    if request.link:
        return request.link
    path = LINK_PATHS.get(request.kind, request.kind.replace("_", "-"))
    return f"{rt.settings.gateway_url.rstrip('/')}/{path}?token={request.token}"


async def deliver(session: AsyncSession, rt: MailerRuntime, *, event_id: str, request: EmailRequestedIn) -> str:
    """Send the mail `request` asks for; returns its Message-ID.

    Raises PermanentEventError (dead-letter now) when it can never be sent, and TemporaryDeliveryError
    (retry with back-off) when the relay is away. Logs name the event and the user, never the link."""
    try:
        mail = rt.renderer.render(request.kind, {
            "username": request.username, "email": request.email, "link": link_for(rt, request),
            "expires_at": request.expires_at.strftime("%Y-%m-%d %H:%M UTC"),
        })
    except UnknownMailKind as exc:
        raise PermanentEventError(str(exc)) from None
    message = rt.renderer.message(mail, to=request.email, to_name=request.username)
    try:
        await rt.sender.send(message)
    except PermanentDeliveryError as exc:
        raise PermanentEventError(f"relay refused the {request.kind} mail of event {event_id}: {exc}") from None
    message_id = str(message["Message-ID"])
    session.add(SentMail(event_id=event_id, kind=request.kind, user_id=request.user_id, recipient=request.email,
                         message_id=message_id))
    log.info("sent %s mail for user %s (event %s, %s)", request.kind, request.user_id, event_id, message_id)
    return message_id


async def deliver_sms(session: AsyncSession, rt: MailerRuntime, *, event_id: str, request: SmsRequestedIn) -> str:
    """Send the SMS `request` asks for through the station's SMS driver; returns the gateway's message id.

    Same failure rules as mail (permanent: dead-letter now; temporary: retry with back-off). Logs name the
    event, the user and a masked number, never the code."""
    try:
        text = render(rt.settings, request.kind, request.code, request.expires_at)
    except UnknownSmsKind as exc:
        raise PermanentEventError(str(exc)) from None
    try:
        message_id = await rt.sms.send(Sms(to=request.phone, text=text, kind=request.kind))
    except PermanentDeliveryError as exc:
        raise PermanentEventError(f"the {request.kind} SMS of event {event_id} cannot be sent: {exc}") from None
    session.add(SentSms(event_id=event_id, kind=request.kind, user_id=request.user_id, recipient=request.phone,
                        message_id=message_id))
    log.info("sent %s SMS for user %s to %s (event %s, %s)", request.kind, request.user_id,
             request.phone[:3] + "…" + request.phone[-2:], event_id, message_id)
    return message_id
