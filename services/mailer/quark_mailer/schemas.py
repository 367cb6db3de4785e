"""How the mailer reads the events it consumes (its own, unregistered models: tolerant readers)."""

import uuid
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field


class Consumed(BaseModel):
    """Unknown fields are ignored (producers add fields); a payload that does not fit is dead-lettered."""

    model_config = ConfigDict(extra="ignore")


class EmailRequestedIn(Consumed):
    """`quark.auth.email_requested`: a mail of `kind` to `email`, carrying a one-time `token` (and the `link`
    auth built from it). Kinds without a template here are dead-lettered, never guessed at."""

    user_id: uuid.UUID
    email: str = Field(min_length=3, max_length=320)
    kind: str = Field(min_length=1, max_length=40)
    token: str = Field(min_length=1, max_length=512)
    expires_at: datetime
    username: str | None = None
    link: str | None = Field(default=None, max_length=2048)


class SmsRequestedIn(Consumed):
    """`quark.auth.sms_requested`: an SMS of `kind` to `phone` (E.164) carrying a one-time `code`."""

    user_id: uuid.UUID | None = None
    phone: str = Field(min_length=4, max_length=32, pattern=r"^\+[1-9][0-9]{3,15}$")
    kind: str = Field(min_length=1, max_length=40)
    code: str = Field(min_length=4, max_length=12)
    expires_at: datetime
    username: str | None = None
