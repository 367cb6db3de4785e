from typing import Literal

from pydantic import AnyHttpUrl, Field, SecretStr
from pydantic_settings import SettingsConfigDict

from quark_sdk.config import ServiceSettings


class MailerSettings(ServiceSettings):
    """Settings of the mailer; every field reads `QUARK_MAILER_<FIELD>`."""

    model_config = SettingsConfigDict(env_prefix="QUARK_MAILER_", extra="ignore")

    port: int = Field(default=3009, ge=1, le=65535)

    # The SMTP relay: Mailpit in the compose fleet, the local sink under `quark dev`, a provider in production.
    smtp_host: str = "127.0.0.1"
    smtp_port: int = Field(default=1025, ge=1, le=65535)
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    # none: plain SMTP (a relay on the station network); starttls: upgrade on 587; tls: implicit TLS on 465.
    smtp_security: Literal["none", "starttls", "tls"] = "none"
    smtp_timeout: float = Field(default=15.0, gt=0, le=300)

    mail_from: str = "Quark <no-reply@quark.localhost>"
    reply_to: str | None = None
    station_name: str = Field(default="Quark", min_length=1, max_length=80)

    # Delivery attempts of one mail (JetStream redeliveries) and the pauses between them, in seconds;
    # a temporary failure (relay down, 4xx) retries, a permanent one (5xx) or the last attempt dead-letters.
    max_attempts: int = Field(default=8, ge=1, le=50)
    retry_backoff: tuple[float, ...] = (2.0, 10.0, 30.0, 60.0, 300.0, 900.0, 1800.0)

    # The dev mailbox page (/dev/mail) reading the local sink's files; never in prod.
    dev_mailbox: bool = True

    # SMS (quark_mailer.sms): http = a Twilio-style REST gateway; dev = files shown at /dev/sms; none = no SMS.
    # Unset: dev outside production, none in production.
    sms_driver: Literal["http", "dev", "none"] | None = None
    sms_sender: str = Field(default="Quark", min_length=1, max_length=32)  # the From number or alphanumeric id
    sms_http_url: AnyHttpUrl | None = None  # e.g. https://api.twilio.com/2010-04-01/Accounts/<SID>/Messages.json
    sms_http_username: str | None = None  # Basic auth (Twilio: the account SID)
    sms_http_password: SecretStr | None = None  # (Twilio: the auth token)
    # Form fields of the POST; values are templates over {to}, {sender}, {text}.
    sms_http_fields: dict[str, str] = Field(default_factory=lambda: {"To": "{to}", "From": "{sender}",
                                                                    "Body": "{text}"})
    sms_http_id_field: str = "sid"  # where the JSON answer names the message
    sms_http_timeout: float = Field(default=15.0, gt=0, le=120)
