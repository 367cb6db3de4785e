"""SMS delivery behind one small interface, `SmsDriver`, chosen by `QUARK_MAILER_SMS_DRIVER`:

- `http`: a generic SMS gateway with a Twilio-style REST API — one form POST per message to a URL, HTTP Basic
  credentials, the form fields templated from settings (`{to}`, `{sender}`, `{text}`), the message id read from
  the JSON answer. Failures are sorted as for mail: the gateway unreachable, 429, 5xx or refusing our
  credentials (401/403: the operator's to fix) is temporary; any other 4xx (bad number, ...) is permanent.
- `dev`: the dev sink — each message a JSON file under `<data_dir>/sms/`, shown at `/dev/sms`. The default
  outside production.
- `none`: no SMS on this station; every SMS event is dead-lettered with that reason. The default in production,
  so that a station never "sends" codes into a dev sink unnoticed.

Messages here carry the gateway's status and words, never the text (which holds the code).
"""

from __future__ import annotations

import json
import os
import time
import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

import httpx

from quark_mailer.settings import MailerSettings
from quark_mailer.smtp import PermanentDeliveryError, TemporaryDeliveryError

TEXTS = {
    "verify_phone": "{station}: your verification code is {code}. It expires in {minutes} min. Never share it.",
    "login_code": "{station}: your sign-in code is {code}. It expires in {minutes} min. Never share it.",
    "mfa_code": "{station}: your sign-in confirmation code is {code}. It expires in {minutes} min. "
                "Never share it.",
}


@dataclass(frozen=True)
class Sms:
    to: str  # E.164
    text: str
    kind: str


class SmsDriver(Protocol):
    async def send(self, sms: Sms) -> str:
        """Deliver (or hand over) the message; its id at the gateway. Raises TemporaryDeliveryError or
        PermanentDeliveryError."""
        ...


class UnknownSmsKind(Exception):
    pass


def render(settings: MailerSettings, kind: str, code: str, expires_at: datetime) -> str:
    if kind not in TEXTS:
        raise UnknownSmsKind(f"no text for SMS kind {kind!r} (known: {', '.join(sorted(TEXTS))})")
    minutes = max(1, round((expires_at - datetime.now(UTC)).total_seconds() / 60))
    return TEXTS[kind].format(station=settings.station_name, code=code, minutes=minutes)


class HttpSmsDriver:
    """A Twilio-style gateway: POST application/x-www-form-urlencoded, Basic auth, JSON answer."""

    def __init__(self, settings: MailerSettings) -> None:
        if not settings.sms_http_url:
            raise ValueError("QUARK_MAILER_SMS_HTTP_URL is required with SMS_DRIVER=http")
        self.settings = settings

    async def send(self, sms: Sms) -> str:
        s = self.settings
        values = {"to": sms.to, "sender": s.sms_sender, "text": sms.text}
        form = {name: template.format(**values) for name, template in s.sms_http_fields.items()}
        auth = (httpx.BasicAuth(s.sms_http_username, s.sms_http_password.get_secret_value() if s.sms_http_password
                                else "") if s.sms_http_username else None)
        error: Exception | None = None
        try:
            async with httpx.AsyncClient(timeout=s.sms_http_timeout) as client:
                resp = await client.post(str(s.sms_http_url), data=form,
                                         auth=auth if auth is not None else httpx.USE_CLIENT_DEFAULT)
        except httpx.HTTPError as exc:
            error = TemporaryDeliveryError(f"SMS gateway unavailable: {type(exc).__name__}")
        if error is not None:  # raised outside the except block (see SmtpSender.send)
            raise error
        if resp.status_code in (401, 403, 408, 429) or resp.status_code >= 500:
            raise TemporaryDeliveryError(f"SMS gateway {resp.status_code}: {_words(resp)}")
        if resp.status_code >= 400:
            raise PermanentDeliveryError(f"SMS gateway {resp.status_code}: {_words(resp)}")
        try:
            body = resp.json()
        except ValueError:
            body = {}
        ident = body.get(s.sms_http_id_field) if isinstance(body, dict) else None
        return str(ident)[:255] if ident else f"http-{uuid.uuid4().hex}"


def _words(resp: httpx.Response) -> str:
    """The gateway's reason, short (Twilio answers {"code", "message"}); never our request."""
    try:
        body = resp.json()
    except ValueError:
        return resp.text.strip()[:200]
    if isinstance(body, dict):
        return str(body.get("message") or body.get("error") or body)[:200]
    return str(body)[:200]


@dataclass(frozen=True)
class StoredSms:
    id: str
    to: str
    text: str
    kind: str
    received_at: datetime


class DevSmsSink:
    """Development: every SMS is a file `<ns timestamp>-<id>.json` under the directory (written atomically)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    async def send(self, sms: Sms) -> str:
        self.directory.mkdir(parents=True, exist_ok=True)
        ident = f"{time.time_ns()}-{uuid.uuid4().hex[:12]}"
        record = {**asdict(sms), "received_at": datetime.now(UTC).isoformat()}
        tmp = self.directory / f".{ident}.tmp"
        tmp.write_text(json.dumps(record), encoding="utf-8")
        os.replace(tmp, self.directory / f"{ident}.json")
        return f"dev-{ident}"

    def list(self) -> list[StoredSms]:
        if not self.directory.is_dir():
            return []
        items = []
        for path in sorted(self.directory.glob("*.json"), reverse=True):
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
                items.append(StoredSms(id=path.stem, to=str(data["to"]), text=str(data["text"]),
                                       kind=str(data["kind"]), received_at=datetime.fromisoformat(data["received_at"])))
            except (OSError, ValueError, KeyError):
                continue
        return items


class NoSmsDriver:
    async def send(self, sms: Sms) -> str:
        raise PermanentDeliveryError("this station has no SMS driver (QUARK_MAILER_SMS_DRIVER=none)")


def sms_driver(settings: MailerSettings) -> SmsDriver:
    driver = settings.sms_driver or ("none" if settings.env == "prod" else "dev")
    if driver == "http":
        return HttpSmsDriver(settings)
    if driver == "dev":
        return DevSmsSink(settings.data_dir / "sms")
    return NoSmsDriver()
