"""Settings for a service: one pydantic-settings class per service, env prefix `QUARK_<NAME>_`.

The infrastructure fields (where PostgreSQL, Redis, NATS and the hub are) are
shared by the whole station, so they are also read from the unprefixed
`QUARK_<FIELD>` variable; a prefixed variable overrides it for one service
(`QUARK_BLOG_NATS_URL` beats `QUARK_NATS_URL`). A bad value fails at start with
one line that names the variable (:class:`ConfigError`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, ClassVar, Literal, TypeVar
from urllib.parse import urlsplit, urlunsplit

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, EnvSettingsSource, PydanticBaseSettingsSource, SettingsConfigDict

from quark_sdk.secrets import SecretStore, load_secret_store

S = TypeVar("S", bound="ServiceSettings")


class ConfigError(Exception):
    """Invalid configuration; str() is one line naming the setting."""


class _SharedEnvSource(EnvSettingsSource):
    """Reads the station-wide `QUARK_<FIELD>` variables for the shared infrastructure fields."""

    def __init__(self, settings_cls: type[BaseSettings], shared: frozenset[str]) -> None:
        super().__init__(settings_cls, env_prefix="QUARK_", case_sensitive=False)
        self._shared = shared

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        if field_name not in self._shared:
            return None, field_name, False
        return super().get_field_value(field, field_name)


class ServiceSettings(BaseSettings):
    """Base of every service's settings class (subclass and set `env_prefix`)."""

    model_config = SettingsConfigDict(env_prefix="QUARK_SERVICE_", extra="ignore", validate_default=True)

    SHARED_FIELDS: ClassVar[frozenset[str]] = frozenset({
        "env", "postgres_url", "redis_url", "nats_url", "hub_url", "data_dir", "event_namespace",
        "log_level", "json_logs", "auth_jwks_url", "hub_jwks_url", "token_audience", "host",
        "gateway_url", "register_with_hub", "hub_registration_token", "require_verified_to_write",
    })

    env: Literal["dev", "test", "prod"] = "dev"
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    instance_url: str | None = None
    # Server-level PostgreSQL URL; the service uses its own database on it unless database_url is set.
    postgres_url: str = "postgresql://postgres@127.0.0.1:5432/postgres"
    database_url: str | None = None
    # Connections kept per process (opened on demand), and extra ones opened in a burst and closed after;
    # 9 modules x 20 stay within the station's PostgreSQL budget (docs/operations.md, "Connection budget").
    db_pool_size: int = Field(default=20, ge=1, le=200)
    db_max_overflow: int = Field(default=0, ge=0, le=200)
    redis_url: str = "redis://127.0.0.1:6379/0"
    nats_url: str = "nats://127.0.0.1:4222"
    hub_url: str | None = None
    register_with_hub: bool = True
    # The hub's shared docking secret (the hub reads the same QUARK_HUB_REGISTRATION_TOKEN variable).
    hub_registration_token: SecretStr | None = None
    gateway_url: str = "http://127.0.0.1:8000"
    auth_jwks_url: str | None = None
    hub_jwks_url: str | None = None
    token_audience: str = "quark"  # noqa: S105 - an audience name, not a secret
    # Prefix for subjects and stream names: isolates tests (and tenants) sharing one NATS server.
    event_namespace: str = Field(default="", pattern=r"^[a-z0-9]*$", max_length=24)
    data_dir: Path = Path(".quark")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    json_logs: bool = True
    outbox_poll_interval: float = Field(default=1.0, gt=0, le=60)
    # Seconds between relay rounds while events keep coming (0: none); batches them under load.
    outbox_linger: float = Field(default=0.0, ge=0, le=1)
    consumer_max_deliver: int = Field(default=5, ge=1, le=100)
    heartbeat_interval: float = Field(default=5.0, gt=0, le=300)
    # Reuse of a verified access token (never past its exp; 0 turns it off): verification is per-request CPU.
    token_cache_ttl: float = Field(default=60.0, ge=0, le=3600)
    # The station's policy (QUARK_REQUIRE_VERIFIED_TO_WRITE): an account that has not verified its email
    # address or phone number may read, but not publish, comment, message or upload (quark_sdk.auth.WritingUser).
    require_verified_to_write: bool = True
    # Whole request body for routes using quark_sdk.routing.GuardedRoute: larger is a 413.
    max_request_bytes: int = Field(default=1_048_576, ge=1024, le=64 * 1_048_576)

    @field_validator("postgres_url", "database_url")
    @classmethod
    def _postgres_scheme(cls, v: str | None) -> str | None:
        if v is not None and not v.startswith(("postgresql://", "postgresql+asyncpg://", "postgres://")):
            raise ValueError("must be a postgresql:// URL")
        return v

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, v: str) -> str:
        if not v.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must be a redis:// URL")
        return v

    @field_validator("nats_url")
    @classmethod
    def _nats_scheme(cls, v: str) -> str:
        for part in v.split(","):
            if not part.strip().startswith(("nats://", "tls://", "ws://", "wss://")):
                raise ValueError("must be a nats:// URL (comma-separated for a cluster)")
        return v

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        shared = _SharedEnvSource(settings_cls, cls.SHARED_FIELDS)
        return init_settings, env_settings, shared, dotenv_settings, file_secret_settings

    @classmethod
    def load(cls: type[S], **overrides: Any) -> S:
        """Build settings from the environment; raise ConfigError naming the bad variable."""
        try:
            return cls(**overrides)
        except ValidationError as exc:
            raise ConfigError(_describe(cls, exc)) from None

    def service_database_url(self, database: str) -> str:
        """Async SQLAlchemy URL of this service's database."""
        url = self.database_url or _with_database(self.postgres_url, database)
        return to_async_url(url)

    def public_instance_url(self) -> str:
        return self.instance_url or f"http://{self.host}:{self.port}"

    def secret_store(self) -> SecretStore:
        return load_secret_store(os.environ, self.data_dir / "secrets")


def _describe(cls: type[ServiceSettings], exc: ValidationError) -> str:
    prefix = str(cls.model_config.get("env_prefix", "")).upper()
    parts = []
    for err in exc.errors():
        name = str(err["loc"][0]) if err["loc"] else "?"
        var = f"{prefix}{name.upper()}"
        if name in cls.SHARED_FIELDS:
            var = f"{var} (or QUARK_{name.upper()})"
        got = err.get("input")
        shown = "" if isinstance(got, dict) or got is None else f" (got {str(got)[:60]!r})"
        parts.append(f"{var}: {err['msg']}{shown}")
    return "invalid setting " + "; ".join(parts)


def _with_database(url: str, database: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + database, parts.query, parts.fragment))


def to_async_url(url: str) -> str:
    for prefix in ("postgresql+asyncpg://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+asyncpg://" + url[len(prefix):]
    raise ValueError(f"not a PostgreSQL URL: {url!r}")
