"""The embedded topology's mail server: a local SMTP sink (aiosmtpd) and the mailbox it fills.

`quark dev` runs :class:`DevMailSink` next to its PostgreSQL/Valkey/NATS: an SMTP
server on 127.0.0.1 that accepts every message and keeps it as one `.eml` file
under `<data_dir>/mail/`, so nothing ever leaves the machine. The mailer module
sends to it exactly as it sends to a real relay in the fleet (where Mailpit or a
provider's SMTP server stands in its place), and shows the files with
:class:`Mailbox` on its dev-only `/dev/mail` page.
"""

from __future__ import annotations

import email
import email.policy
import os
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

from quark_sdk.embedded import free_port

MAIL_ID_CHARS = frozenset("0123456789abcdef-")


@dataclass(frozen=True)
class StoredMail:
    """One message of the dev mailbox, parsed for display."""

    id: str
    received_at: datetime
    sender: str
    to: str
    subject: str
    text: str
    html: str | None


class Mailbox:
    """The directory of `.eml` files the sink writes; newest first."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def store(self, raw: bytes) -> str:
        """Keep one message; the id sorts by arrival (nanosecond clock first). Written atomically."""
        self.directory.mkdir(parents=True, exist_ok=True)
        mail_id = f"{time.time_ns():020d}-{uuid.uuid4().hex[:8]}"
        tmp = self.directory / f".{mail_id}.tmp"
        tmp.write_bytes(raw)
        os.replace(tmp, self.directory / f"{mail_id}.eml")
        return mail_id

    def ids(self) -> list[str]:
        if not self.directory.is_dir():
            return []
        return sorted((p.stem for p in self.directory.glob("*.eml")), reverse=True)

    def get(self, mail_id: str) -> StoredMail | None:
        if not mail_id or not set(mail_id) <= MAIL_ID_CHARS:
            return None  # never a path outside the mailbox
        path = self.directory / f"{mail_id}.eml"
        try:
            raw = path.read_bytes()
        except OSError:
            return None
        return parse_mail(mail_id, raw)

    def list(self, limit: int = 200) -> list[StoredMail]:
        mails = (self.get(i) for i in self.ids()[:limit])
        return [m for m in mails if m is not None]


def parse_mail(mail_id: str, raw: bytes) -> StoredMail:
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    text_part = msg.get_body(preferencelist=("plain",))
    html_part = msg.get_body(preferencelist=("html",))
    try:
        received = parsedate_to_datetime(str(msg["Date"])) if msg["Date"] else None
    except (TypeError, ValueError):
        received = None
    if received is None:
        received = datetime.fromtimestamp(int(mail_id.split("-", 1)[0]) / 1e9, UTC)
    return StoredMail(
        id=mail_id,
        received_at=received,
        sender=str(msg["From"] or ""),
        to=str(msg["To"] or ""),
        subject=str(msg["Subject"] or ""),
        text=text_part.get_content() if text_part is not None else "",
        html=html_part.get_content() if html_part is not None else None,
    )


class _Handler:
    """aiosmtpd handler: every accepted message goes to the mailbox."""

    def __init__(self, mailbox: Mailbox) -> None:
        self.mailbox = mailbox

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.mailbox.store(envelope.original_content or envelope.content)
        return "250 Message accepted for delivery"


@dataclass
class DevMailSink:
    """An SMTP server on 127.0.0.1 (its own thread) that keeps every message in a :class:`Mailbox`."""

    directory: Path
    port: int = 0
    host: str = "127.0.0.1"

    def __post_init__(self) -> None:
        self.mailbox = Mailbox(self.directory)
        self._controller: Any = None

    def start(self) -> DevMailSink:
        from aiosmtpd.controller import Controller

        self.directory.mkdir(parents=True, exist_ok=True)
        if not self.port:
            self.port = free_port(self.host)
        self._controller = Controller(_Handler(self.mailbox), hostname=self.host, port=self.port,
                                      ready_timeout=10)
        self._controller.start()
        return self

    def env(self) -> dict[str, str]:
        """Points the mailer at this sink."""
        return {"QUARK_MAILER_SMTP_HOST": self.host, "QUARK_MAILER_SMTP_PORT": str(self.port),
                "QUARK_MAILER_SMTP_SECURITY": "none"}

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None


__all__ = ["DevMailSink", "Mailbox", "StoredMail", "parse_mail"]
