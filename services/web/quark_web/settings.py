from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from quark_sdk.config import ServiceSettings


class WebSettings(ServiceSettings):
    """Settings of the web client; every field reads `QUARK_WEB_<FIELD>`."""

    model_config = SettingsConfigDict(env_prefix="QUARK_WEB_", extra="ignore")

    port: int = Field(default=3008, ge=1, le=65535)

    # Where the pages call the other modules (their public APIs). Defaults to gateway_url.
    api_url: str | None = None
    api_timeout: float = Field(default=10.0, gt=0, le=120)
    upload_timeout: float = Field(default=120.0, gt=0, le=600)  # forwarding an image to media

    # The session cookie: an opaque random id; the tokens stay in Valkey. `Secure` unless set off (plain
    # http in development): by default on in prod, off in dev and test.
    cookie_name: str = Field(default="quark_session", pattern=r"^[A-Za-z0-9_\-]{1,64}$")
    cookie_secure: bool | None = None
    # Idle lifetime of a browser session (renewed on use); never beyond the refresh token's own expiry.
    session_ttl: int = Field(default=7 * 86400, ge=60, le=90 * 86400)
    # Refresh the access token when it has fewer seconds left than this.
    refresh_margin: int = Field(default=30, ge=0, le=600)
    # An instance keeps a session it read from Valkey this many seconds (0: always reads Valkey). Its own
    # changes (sign-out, refresh) take effect at once; another instance's sign-out within this delay.
    session_cache_seconds: float = Field(default=1.0, ge=0, le=10)

    # Secret for the CSRF tokens (HMAC). Unset: one random secret shared by every instance through Valkey.
    csrf_secret: SecretStr | None = None

    # The public origin the pages are served from (Open Graph and Atom absolute links); unset: the request's.
    public_url: str | None = Field(default=None, pattern=r"^https?://[^\s/]+(/[^\s]*)?$")
    # Extra image origins for the CSP (e.g. the object store that media redirects to).
    csp_img_sources: list[str] = Field(default_factory=list, max_length=10)

    # BFF caching of what is the same for every viewer (public profiles, ready media), in seconds; 0: off.
    cache_ttl: float = Field(default=30.0, ge=0, le=3600)
    page_size: int = Field(default=10, ge=1, le=50)
    max_upload_bytes: int = Field(default=10 * 1_048_576, ge=1024, le=200 * 1_048_576)

    # The messaging module's WebSocket the web module proxies (the browser never holds the token);
    # unset: API_URL with ws:// or wss:// and /api/v1/messages/ws.
    messaging_ws_url: str | None = Field(default=None, pattern=r"^wss?://[^\s]+$")

    # The console's operator page links here (Grafana's fleet dashboard); unset: no Grafana links.
    grafana_url: str | None = Field(default=None, pattern=r"^https?://[^\s]+$")

    def secure_cookies(self) -> bool:
        return self.env == "prod" if self.cookie_secure is None else self.cookie_secure

    def api_base(self) -> str:
        return (self.api_url or self.gateway_url).rstrip("/")

    def messaging_ws(self) -> str:
        if self.messaging_ws_url:
            return self.messaging_ws_url
        base = self.api_base()
        return ("wss://" + base[len("https://"):] if base.startswith("https://")
                else "ws://" + base.removeprefix("http://")) + "/api/v1/messages/ws"
