"""Delivery over SMTP (aiosmtplib), with failures sorted into "try again later" and "never".

Temporary: the relay is unreachable, times out, drops the connection, answers 4xx, or refuses our
credentials (an operator fixes that; the mail waits). Permanent: the relay answers 5xx to the sender,
the recipient or the data (no such mailbox, policy rejection) — retrying cannot help.
Messages here carry SMTP codes and the relay's words, never the mail's body (which holds the token).
"""

from __future__ import annotations

from email.message import EmailMessage

import aiosmtplib

from quark_mailer.settings import MailerSettings


class TemporaryDeliveryError(Exception):
    """Try again later (JetStream redelivers with back-off)."""


class PermanentDeliveryError(Exception):
    """The relay refused the mail for good."""


def _code_error(code: int, text: str) -> Exception:
    message = f"SMTP {code}: {text.strip()[:300]}"
    if 500 <= code < 600 and code not in (530, 535):  # 530/535: authentication — the operator's to fix
        return PermanentDeliveryError(message)
    return TemporaryDeliveryError(message)


class SmtpSender:
    def __init__(self, settings: MailerSettings) -> None:
        self.settings = settings

    async def send(self, msg: EmailMessage) -> None:
        error = await self._try_send(msg)
        if error is not None:
            # Raised outside the except block: no chained OSError, which the SDK's consumer would take
            # for its own database being down (and hold the event instead of spending a delivery).
            raise error

    async def _try_send(self, msg: EmailMessage) -> Exception | None:
        s = self.settings
        try:
            await aiosmtplib.send(
                msg,
                hostname=s.smtp_host,
                port=s.smtp_port,
                # No username, no AUTH (an empty one from a compose default counts as none).
                username=s.smtp_username or None,
                password=s.smtp_password.get_secret_value() if s.smtp_username and s.smtp_password else None,
                use_tls=s.smtp_security == "tls",
                start_tls=s.smtp_security == "starttls",
                timeout=s.smtp_timeout,
            )
        except aiosmtplib.SMTPRecipientsRefused as exc:
            # Every recipient refused: permanent only if each refusal is.
            errors = [_code_error(r.code, r.message) for r in exc.recipients]
            if errors and all(isinstance(e, PermanentDeliveryError) for e in errors):
                return PermanentDeliveryError("; ".join(map(str, errors)))
            return TemporaryDeliveryError("; ".join(map(str, errors)) or "recipients refused")
        except aiosmtplib.SMTPResponseException as exc:
            return _code_error(exc.code, exc.message)
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            return TemporaryDeliveryError(f"SMTP relay {s.smtp_host}:{s.smtp_port} unavailable: "
                                          f"{type(exc).__name__}: {str(exc)[:200]}")
        return None
