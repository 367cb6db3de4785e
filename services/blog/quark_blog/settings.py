"""Settings of the blog service (env prefix `QUARK_BLOG_`); durations are in seconds."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from quark_sdk.config import ServiceSettings


class BlogSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="QUARK_BLOG_", extra="ignore", validate_default=True)

    port: int = Field(default=3004, ge=1, le=65535)

    # -- input limits
    max_request_bytes: int = Field(default=1_048_576, ge=1024, le=64 * 1_048_576)  # whole request body: 413
    max_body_chars: int = Field(default=100_000, ge=100, le=5_000_000)  # a post body (source): 413
    max_comment_chars: int = Field(default=10_000, ge=10, le=1_000_000)  # a comment body (source): 413
    event_body_text_max: int = Field(default=20_000, ge=100, le=1_000_000)  # body_text carried by events

    # -- home timelines (Redis sorted sets, fan-out on write)
    timeline_cap: int = Field(default=800, ge=10, le=100_000)  # entries kept per user
    timeline_ttl: int = Field(default=7 * 86400, ge=60)  # an unread timeline expires (cold -> database)
    fanout_chunk: int = Field(default=1000, ge=10, le=100_000)  # followers per Redis pipeline
    read_pool_size: int = Field(default=10, ge=1, le=200)  # asyncpg connections for home timeline reads

    # -- writes
    write_rate_limit: int = Field(default=120, ge=1)  # writes per user and window
    write_rate_window: float = Field(default=60.0, gt=0)

    # -- scheduling
    scheduler_interval: float = Field(default=1.0, gt=0, le=3600)  # longest sleep of the scheduler
    scheduler_batch: int = Field(default=100, ge=1, le=10_000)
