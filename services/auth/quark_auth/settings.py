"""Settings of the auth service (env prefix `QUARK_AUTH_`); durations are in seconds."""

from __future__ import annotations

from typing import Literal, Self

from pydantic import Field, model_validator
from pydantic_settings import SettingsConfigDict

from quark_sdk.config import ServiceSettings

DAY = 86400.0


class AuthSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="QUARK_AUTH_", extra="ignore", validate_default=True)

    port: int = Field(default=3001, ge=1, le=65535)

    # -- passwords
    bcrypt_rounds: int = Field(default=12, ge=4, le=16)

    # -- tokens
    access_token_ttl: int = Field(default=900, ge=30, le=3600)
    refresh_token_ttl: int = Field(default=7 * 86400, ge=300, le=90 * 86400)
    session_max_age: int = Field(default=90 * 86400, ge=3600, le=365 * 86400)  # absolute, despite rotation
    signing_algorithm: Literal["EdDSA", "RS256"] = "EdDSA"
    signing_keys_path: str = Field(default="auth/signing-keys", pattern=r"^[A-Za-z0-9][A-Za-z0-9._/-]*$")
    rotate_after: float = Field(default=30 * DAY, ge=60)
    key_overlap: float = Field(default=3600.0, ge=0)  # a retired key stays published this long
    key_refresh_interval: float = Field(default=60.0, gt=0, le=3600)  # instances re-read the key store
    jwks_max_age: int = Field(default=300, ge=0, le=3600)  # Cache-Control of the JWKS response

    # -- one-off tokens and 2FA
    verify_email_ttl: int = Field(default=2 * 86400, ge=300)
    reset_password_ttl: int = Field(default=3600, ge=300, le=86400)
    mfa_challenge_ttl: int = Field(default=300, ge=30, le=1800)
    mfa_max_attempts: int = Field(default=5, ge=1, le=20)
    totp_issuer: str = Field(default="Quark", min_length=1, max_length=64)
    recovery_code_count: int = Field(default=10, ge=4, le=20)
    app_url: str | None = None  # where links in emails point (defaults to gateway_url)

    # -- abuse protection
    login_ip_limit: int = Field(default=30, ge=1)
    login_ip_window: float = Field(default=60.0, gt=0)
    lockout_threshold: int = Field(default=5, ge=1, le=100)  # failures per account within lockout_window
    lockout_window: float = Field(default=900.0, gt=0)
    lockout_base: float = Field(default=60.0, gt=0)  # first lockout; doubles on each further one
    lockout_max: float = Field(default=3600.0, gt=0)
    register_ip_limit: int = Field(default=20, ge=1)
    register_ip_window: float = Field(default=3600.0, gt=0)
    email_request_limit: int = Field(default=5, ge=1)  # verify / reset emails per account and window
    email_request_window: float = Field(default=3600.0, gt=0)
    email_request_ip_limit: int = Field(default=30, ge=1)
    # A password-reset request answers no sooner than this, whether the address has an account or not.
    reset_request_floor: float = Field(default=0.2, ge=0, le=5)
    sensitive_action_limit: int = Field(default=10, ge=1)  # password checks / 2FA codes per user and window
    sensitive_action_window: float = Field(default=900.0, gt=0)
    trust_proxy_headers: bool = False  # take the client IP from X-Forwarded-For (behind Traefik / the gateway)

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.env == "prod" and self.bcrypt_rounds < 12:
            raise ValueError("bcrypt_rounds must be >= 12 in production")
        # A retired key must verify every token it signed: tokens live access_token_ttl, and an instance that
        # has not re-read the store yet may sign with the old key for up to key_refresh_interval more.
        needed = self.access_token_ttl + self.key_refresh_interval + 60
        if self.key_overlap < needed:
            raise ValueError(f"key_overlap must be >= access_token_ttl + key_refresh_interval + 60 (= {needed:g})")
        if self.rotate_after <= self.key_refresh_interval:
            raise ValueError("rotate_after must be longer than key_refresh_interval")
        if self.lockout_max < self.lockout_base:
            raise ValueError("lockout_max must be >= lockout_base")
        return self

    def link_base(self) -> str:
        return (self.app_url or self.gateway_url).rstrip("/")
