"""Mails as text + HTML from Jinja2 templates (quark_mailer/templates/<kind>.txt and .html).

The HTML templates autoescape everything; the text ones are plain. A kind without both templates
cannot be rendered, which is a permanent failure (the event is dead-lettered, not retried).
"""

from __future__ import annotations

import email.utils
from dataclasses import dataclass
from datetime import UTC, datetime
from email.headerregistry import Address
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import jinja2

from quark_mailer.settings import MailerSettings

TEMPLATES = Path(__file__).parent / "templates"

SUBJECTS = {
    "verify_email": "Confirm your email address for {station}",
    "reset_password": "Reset your {station} password",
}


class UnknownMailKind(Exception):
    """No template for this kind of mail."""


@dataclass(frozen=True)
class RenderedMail:
    subject: str
    text: str
    html: str


class Renderer:
    def __init__(self, settings: MailerSettings) -> None:
        self.settings = settings
        loader = jinja2.FileSystemLoader(TEMPLATES)
        self._text = jinja2.Environment(loader=loader, autoescape=False, undefined=jinja2.StrictUndefined,  # noqa: S701 - text/plain
                                        keep_trailing_newline=True)
        self._html = jinja2.Environment(loader=loader, autoescape=True, undefined=jinja2.StrictUndefined)

    def kinds(self) -> list[str]:
        return sorted(SUBJECTS)

    def render(self, kind: str, values: dict[str, Any]) -> RenderedMail:
        if kind not in SUBJECTS:
            raise UnknownMailKind(f"no template for mail kind {kind!r} (known: {', '.join(self.kinds())})")
        context = {"station": self.settings.station_name, **values}
        return RenderedMail(
            subject=SUBJECTS[kind].format(station=self.settings.station_name),
            text=self._text.get_template(f"{kind}.txt").render(context),
            html=self._html.get_template(f"{kind}.html").render(context),
        )

    def message(self, mail: RenderedMail, *, to: str, to_name: str | None = None) -> EmailMessage:
        """The MIME message: multipart/alternative (text first, HTML preferred), with its own Message-ID."""
        msg = EmailMessage()
        msg["From"] = self.settings.mail_from
        msg["To"] = Address(display_name=to_name or "", addr_spec=to) if "@" in to else to
        msg["Subject"] = mail.subject
        msg["Date"] = email.utils.format_datetime(datetime.now(UTC))
        sender_domain = email.utils.parseaddr(self.settings.mail_from)[1].rpartition("@")[2] or "quark.localhost"
        msg["Message-ID"] = email.utils.make_msgid(domain=sender_domain)
        msg["Auto-Submitted"] = "auto-generated"  # RFC 3834: no auto-replies to this
        if self.settings.reply_to:
            msg["Reply-To"] = self.settings.reply_to
        msg.set_content(mail.text)
        msg.add_alternative(mail.html, subtype="html")
        return msg
