"""Settings of the auth service (env prefix `QUARK_AUTH_`); durations are in seconds."""

from __future__ import annotations

import re
from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic_settings import SettingsConfigDict

from quark_sdk.config import ServiceSettings

DAY = 86400.0


class ProviderSettings(BaseModel):
    """One sign-in provider (`QUARK_AUTH_OIDC_PROVIDERS` is a JSON object of name → this).

    `preset` fills the endpoints and claim names of well-known providers: `google` (OIDC, issuer
    accounts.google.com), `github` (OAuth2 + the REST user API: GitHub has no OIDC for people) and `oidc`
    (any OpenID Connect issuer — Keycloak, ESIA/Gosuslugi through its OIDC gateway, ...: `issuer` or
    `discovery_url` required). The client secret is read from the secret store at `client_secret_path`
    (key `client_secret`), never from the environment."""

    model_config = ConfigDict(extra="forbid")

    preset: Literal["google", "github", "oidc"] = "oidc"
    display_name: str | None = Field(default=None, max_length=64)
    issuer: str | None = None
    discovery_url: str | None = None
    client_id: str = Field(min_length=1, max_length=512)
    client_secret_path: str | None = Field(default=None, pattern=r"^[A-Za-z0-9][A-Za-z0-9._/-]*$")
    scopes: list[str] | None = None
    # Claim names: subject, email, email_verified, username (suggested), name (display name).
    claims: dict[str, str] = Field(default_factory=dict)
    # OAuth2 without discovery (the github preset fills them).
    authorize_url: str | None = None
    token_url: str | None = None
    userinfo_url: str | None = None
    emails_url: str | None = None  # GitHub: /user/emails tells which addresses are verified


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
    # A registration whose email already has an account stores nothing, but holds its username this long,
    # so that a second attempt at the same username is refused as if the first had created it: otherwise a
    # free username would reveal that the email was taken.
    username_hold_seconds: int = Field(default=86_400, gt=0)
    email_request_ip_limit: int = Field(default=30, ge=1)
    # A password-reset request answers no sooner than this, whether the address has an account or not.
    reset_request_floor: float = Field(default=0.2, ge=0, le=5)
    sensitive_action_limit: int = Field(default=10, ge=1)  # password checks / 2FA codes per user and window
    sensitive_action_window: float = Field(default=900.0, gt=0)
    trust_proxy_headers: bool = False  # take the client IP from X-Forwarded-For (behind Traefik / the gateway)

    # -- phone numbers and SMS codes
    phone_default_region: str | None = Field(default=None, pattern=r"^[A-Z]{2}$")  # numbers without +<country>
    phone_code_ttl: int = Field(default=300, ge=60, le=1800)
    phone_code_attempts: int = Field(default=5, ge=1, le=10)  # wrong codes, then a new code is needed
    phone_passwordless: bool = True  # sign in with phone + SMS code (no password)
    sms_number_limit: int = Field(default=5, ge=1)  # codes sent to one number per window
    sms_ip_limit: int = Field(default=10, ge=1)  # codes requested from one client address per window
    sms_account_limit: int = Field(default=5, ge=1)  # codes sent for one account per window
    sms_window: float = Field(default=3600.0, gt=0)
    sms_backoff_base: float = Field(default=30.0, ge=0)  # pause after a send to a number; doubles each send
    sms_backoff_max: float = Field(default=1800.0, ge=0)

    # -- sign-in providers (OIDC / OAuth2)
    oidc_providers: dict[str, ProviderSettings] = Field(default_factory=dict)
    # Where providers may send the browser back to: exact URLs, besides `<app_url>/...` (the web client).
    oidc_redirect_uris: list[str] = Field(default_factory=list)
    oidc_state_ttl: int = Field(default=600, ge=60, le=3600)  # from authorize to callback
    oidc_signup_ttl: int = Field(default=900, ge=60, le=3600)  # from callback to choosing a username
    oidc_http_timeout: float = Field(default=10.0, gt=0, le=60)

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
        for name, provider in self.oidc_providers.items():
            if not re.fullmatch(r"[a-z0-9][a-z0-9_-]{0,31}", name):
                raise ValueError(f"provider name {name!r}: 1-32 of a-z 0-9 _ -")
            if provider.preset == "oidc" and not (provider.issuer or provider.discovery_url):
                raise ValueError(f"provider {name!r}: an OIDC provider needs issuer or discovery_url")
        return self

    def link_base(self) -> str:
        return (self.app_url or self.gateway_url).rstrip("/")
