"""The hub's settings (env prefix `QUARK_HUB_`); every interval and limit is a setting so tests run fast."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from quark_sdk.config import ConfigError, ServiceSettings

# What the gateway may reach of the hub (its own Traefik router): discovery, the dashboard and its stream,
# recent events and the JWKS. A trailing "/" means "this prefix"; anything else is one exact path. Registry
# writes, /traefik/config, /token and /clients are served on the internal network only.
PUBLIC_PATHS = (
    "/api/v1/hub/services",
    "/api/v1/hub/services/",
    "/api/v1/hub/events",
    "/api/v1/hub/stream",
    "/api/v1/hub/.well-known/jwks.json",
    "/modules/discovery",
    "/hub",
    "/hub/static/",
)
# In prod the gateway reaches only the JWKS: discovery and the dashboard list internal instance URLs, so
# they stay on the internal network (and even there need an admin or operator token, see api.internal_reader).
PROD_PUBLIC_PATHS = ("/api/v1/hub/.well-known/jwks.json",)


class HubSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="QUARK_HUB_", extra="ignore", validate_default=True)

    port: int = Field(default=3002, ge=1, le=65535)
    # The hub docks itself in its own registry (in-process), never over HTTP: see `_never_register_over_http`.
    register_with_hub: bool = False
    self_dock: bool = True

    # -- registry
    lease_ttl: float = Field(default=15.0, ge=0.5, le=3600)
    registration_token: SecretStr | None = None
    register_rate_limit: int = Field(default=60, ge=1, le=100_000)
    register_rate_window: float = Field(default=60.0, gt=0, le=86_400)
    max_register_body: int = Field(default=64 * 1024, ge=1024, le=10 * 1024 * 1024)
    # health_url must be on the instance's own origin unless this is set (keeps the prober from being an SSRF tool).
    allow_foreign_health_urls: bool = False
    # Peers whose X-Forwarded-For is believed when finding a client's address for rate limits (IPs or CIDRs).
    trusted_proxies: list[str] = Field(default_factory=list)
    # Event contracts at docking (quark_hub.contracts): enforce = refuse a module that would break a docked
    # consumer/publisher pair (409 contract-incompatible), warn = dock it and log, off = no check.
    contract_check: Literal["enforce", "warn", "off"] = "enforce"

    # -- health monitor
    monitor_interval: float = Field(default=5.0, gt=0, le=300)
    probe_timeout: float = Field(default=2.0, gt=0, le=60)
    slow_probe_threshold: float = Field(default=1.0, gt=0, le=60)
    unhealthy_after: int = Field(default=2, ge=1, le=100)
    probe_concurrency: int = Field(default=32, ge=1, le=1000)

    # -- identity
    token_ttl: int = Field(default=300, ge=10, le=3600)
    token_audiences: list[str] = Field(default_factory=lambda: ["quark"])
    token_rate_limit: int = Field(default=120, ge=1, le=100_000)
    token_rate_window: float = Field(default=60.0, gt=0, le=86_400)
    token_failure_limit: int = Field(default=10, ge=1, le=10_000)
    token_failure_window: float = Field(default=300.0, gt=0, le=86_400)
    # Provision service clients from the secret store path "hub/clients" at start; None = everywhere but prod.
    provision_clients: bool | None = None

    # -- Traefik provider
    # Plain HTTP and TLS (deploy/traefik/traefik.yml): every module's router listens on both.
    traefik_entrypoints: list[str] = Field(default_factory=lambda: ["web", "websecure"])
    traefik_rate_average: int = Field(default=100, ge=0)
    traefik_rate_burst: int = Field(default=200, ge=0)
    traefik_cors_origins: list[str] = Field(default_factory=list)
    # Crash -> no 502 storm (docs/fault-tolerance.md): Traefik probes each server every second, takes one out
    # after `traefik_passive_failures` failed requests within the window, retries idempotent requests.
    traefik_health_interval: str = Field(default="1s", pattern=r"^\d+(ms|s|m)$")
    # A crashed process refuses connections at once, so a long timeout costs nothing there; a short one took
    # the only instance of a module out whenever a loaded machine answered /health late ("no available server").
    traefik_health_timeout: str = Field(default="3s", pattern=r"^\d+(ms|s|m)$")
    traefik_passive_window: str = Field(default="5s", pattern=r"^\d+(ms|s|m)$")
    traefik_passive_failures: int = Field(default=2, ge=1, le=100)
    traefik_retry_attempts: int = Field(default=3, ge=1, le=10)
    # The paths of the hub's own public router (see PUBLIC_PATHS); everything else stays internal.
    traefik_public_paths: list[str] = Field(default_factory=lambda: list(PUBLIC_PATHS), max_length=64)

    # -- dashboard / live stream
    recent_events: int = Field(default=100, ge=1, le=10_000)
    stream_refresh: float = Field(default=5.0, gt=0, le=300)
    # SSE responses end after this long (the browser reconnects at once); bounds how long an open
    # dashboard can hold up a graceful shutdown.
    stream_max_seconds: float = Field(default=30.0, gt=0, le=3600)

    @model_validator(mode="after")
    def _never_register_over_http(self) -> HubSettings:
        # QUARK_REGISTER_WITH_HUB is station-wide; the hub registering with itself over HTTP would loop
        # through its own lifespan, so it always docks in-process instead (self_dock).
        self.register_with_hub = False
        return self

    @model_validator(mode="after")
    def _token_required_in_prod(self) -> HubSettings:
        # Without a token anyone who reaches the hub can dock a module and so get routes on the gateway.
        # ConfigError (not ValueError) passes through pydantic unchanged: `quark serve` prints it as one line.
        if self.env == "prod" and (self.registration_token is None
                                   or not self.registration_token.get_secret_value().strip()):
            raise ConfigError("QUARK_HUB_REGISTRATION_TOKEN must be set when QUARK_ENV=prod (every module sends it "
                              "to register); generate one: python3 -c 'import secrets; "
                              "print(secrets.token_urlsafe(32))'")
        return self

    @model_validator(mode="after")
    def _prod_exposes_nothing_internal(self) -> HubSettings:
        if self.env == "prod" and "traefik_public_paths" not in self.model_fields_set:
            self.traefik_public_paths = list(PROD_PUBLIC_PATHS)
        return self

    @field_validator("traefik_public_paths")
    @classmethod
    def _absolute_paths(cls, v: list[str]) -> list[str]:
        for path in v:
            if not path.startswith("/") or "`" in path or len(path) > 256:
                raise ValueError(f"not an absolute URL path: {path[:60]!r}")
        return v

    @property
    def heartbeat_every(self) -> float:
        return self.lease_ttl / 3

    @property
    def should_provision_clients(self) -> bool:
        return self.env != "prod" if self.provision_clients is None else self.provision_clients
