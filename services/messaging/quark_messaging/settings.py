"""Settings of the messaging service (env prefix `QUARK_MESSAGING_`); durations are in seconds."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from quark_sdk.config import ServiceSettings


class MessagingSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="QUARK_MESSAGING_", extra="ignore", validate_default=True)

    port: int = Field(default=3005, ge=1, le=65535)
    # Chat traffic is a steady stream of events: let the outbox relay batch them (SDK setting, seconds).
    outbox_linger: float = Field(default=0.01, ge=0, le=1)

    # -- input limits
    max_body_chars: int = Field(default=4000, ge=10, le=20_000)  # one message: 413 above
    max_attachments: int = Field(default=10, ge=0, le=100)
    max_title_chars: int = Field(default=200, ge=1, le=200)
    max_group_members: int = Field(default=1000, ge=2, le=100_000)
    max_invite_batch: int = Field(default=100, ge=1, le=10_000)
    max_frame_bytes: int = Field(default=65_536, ge=1024, le=16 * 1_048_576)  # one WebSocket frame from a client

    # -- rate limits (per user, shared by every instance through Redis)
    message_rate_limit: int = Field(default=100, ge=1)  # messages per user and window (REST and WebSocket)
    message_rate_window: float = Field(default=60.0, gt=0)
    typing_rate_limit: int = Field(default=30, ge=1)  # typing indicators per user and window
    write_rate_limit: int = Field(default=120, ge=1)  # chat changes (create, invite, rename...) per window
    report_rate_limit: int = Field(default=20, ge=1)  # reports of messages per user and report window
    report_rate_window: float = Field(default=3600.0, gt=0)
    # Messages before and after a reported one that its report carries to the moderators (its neighbourhood).
    report_context: int = Field(default=3, ge=0, le=20)

    # -- WebSocket
    allowed_origins: list[str] = Field(default_factory=lambda: ["http://localhost:8000", "http://127.0.0.1:8000"])
    ws_auth_timeout: float = Field(default=10.0, gt=0)  # the first frame must authenticate within this
    ws_send_queue: int = Field(default=256, ge=1, le=100_000)  # frames buffered per connection; full → dropped
    ws_heartbeat_interval: float = Field(default=20.0, gt=0)  # server ping frame / presence refresh
    ws_idle_timeout: float = Field(default=60.0, gt=0)  # no frame from the client for this long → closed
    ws_close_timeout: float = Field(default=10.0, gt=0)  # a dropped slow client has this long to read its close
    resume_limit: int = Field(default=500, ge=1, le=100_000)  # messages replayed per conversation on resume
    presence_ttl: float = Field(default=60.0, gt=1)  # a connection counts as online this long after a heartbeat
