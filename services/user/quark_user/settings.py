from pydantic import Field
from pydantic_settings import SettingsConfigDict

from quark_sdk.config import ServiceSettings


class UserSettings(ServiceSettings):
    """Settings of the user service; every field reads `QUARK_USER_<FIELD>`."""

    model_config = SettingsConfigDict(env_prefix="QUARK_USER_", extra="ignore")

    port: int = Field(default=3007, ge=1, le=65535)

    # Profile limits (the database columns allow the maxima given here).
    display_name_max_length: int = Field(default=100, ge=1, le=100)
    bio_max_length: int = Field(default=500, ge=0, le=5000)
    links_max_count: int = Field(default=5, ge=0, le=20)
    link_max_length: int = Field(default=300, ge=12, le=2000)

    # Follow attempts (follows and follow requests) per user per window, in Redis; 0 disables.
    follow_rate_limit: int = Field(default=300, ge=0, le=100_000)
    follow_rate_window: float = Field(default=3600.0, gt=0, le=86_400)

    # Activity entries older than this are purged by a background job; 0 keeps them forever.
    activity_retention_days: int = Field(default=365, ge=0, le=36_500)
    activity_purge_interval: float = Field(default=3600.0, gt=0, le=86_400)


    # How often each instance looks for timed suspensions whose end has passed (seconds).
    suspension_check_interval: float = Field(default=60.0, gt=0, le=3600)
