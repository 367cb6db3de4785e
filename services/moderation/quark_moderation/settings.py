from pydantic import Field
from pydantic_settings import SettingsConfigDict

from quark_sdk.config import ServiceSettings


class ModerationSettings(ServiceSettings):
    """Settings of the moderation module; every field reads `QUARK_MODERATION_<FIELD>`."""

    model_config = SettingsConfigDict(env_prefix="QUARK_MODERATION_", extra="ignore")

    port: int = Field(default=3010, ge=1, le=65535)

    # Decisions per moderator per minute: a runaway script (or a stolen session) cannot empty the queue at once.
    decision_rate_limit: int = Field(default=120, ge=1)
    # The longest suspension a moderator may give in one decision (admins lift or extend it in user administration).
    max_suspension_days: int = Field(default=365, ge=1, le=3650)
    # Rows of one audit export (CSV / JSON lines); narrower filters for more.
    export_max_rows: int = Field(default=100_000, ge=1, le=1_000_000)
