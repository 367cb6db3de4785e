"""Everything a running web instance holds, in one object the SDK builds (`QuarkModule(runtime=build_runtime)`).

Routes reach it through the `Runtime` dependency or `runtime(request)` (page helpers); nothing lives in
module globals, so several instances in one process (tests, the embedded station) never share state.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Annotated

import redis.asyncio as aioredis
from fastapi import Request

from quark_sdk.app import RuntimeDep, ServiceContext
from quark_web.apiclient import Api
from quark_web.assets import Assets
from quark_web.settings import WebSettings

if TYPE_CHECKING:
    from quark_web.sessions import SessionStore


@dataclass
class WebRuntime:
    ctx: ServiceContext[WebSettings, WebRuntime]
    api: Api
    assets: Assets
    csrf_secret: bytes

    @property
    def settings(self) -> WebSettings:
        return self.ctx.settings

    @property
    def redis(self) -> aioredis.Redis:
        return self.ctx.cache()

    @cached_property
    def sessions(self) -> SessionStore:
        """One store per instance: it holds the sessions read in the last second (`session_cache_seconds`)."""
        from quark_web.sessions import SessionStore

        return SessionStore(self)

    def csrf_token(self, nonce: str) -> str:
        return hmac.new(self.csrf_secret, nonce.encode(), "sha256").hexdigest()

    async def aclose(self) -> None:
        await self.api.client.aclose()


async def _shared_secret(ctx: ServiceContext[WebSettings, WebRuntime], settings: WebSettings) -> bytes:
    """The CSRF secret: configured, or one random value every instance shares through Valkey."""
    if settings.csrf_secret is not None:
        return settings.csrf_secret.get_secret_value().encode()
    key = ctx.key("csrf-secret")
    redis = ctx.cache()
    await redis.set(key, secrets.token_hex(32), nx=True)
    value = await redis.get(key)
    return value if isinstance(value, bytes) else str(value).encode()


async def build_runtime(ctx: ServiceContext[WebSettings, WebRuntime]) -> WebRuntime:
    settings = ctx.settings
    # In `quark dev` the gateway is in this process: the SDK gives an in-process client to it (the same
    # public API, no loopback HTTP); in the fleet, HTTP to QUARK_WEB_API_URL.
    client = ctx.api_client(settings.api_base(), timeout=settings.api_timeout, headers={"User-Agent": "quark-web/0.1"})
    return WebRuntime(ctx=ctx, api=Api(client), assets=Assets.load(), csrf_secret=await _shared_secret(ctx, settings))


Runtime = Annotated[WebRuntime, RuntimeDep]


def runtime(request: Request) -> WebRuntime:
    """For page helpers that hold the request rather than declare dependencies."""
    rt: WebRuntime = request.app.state.quark.runtime
    return rt
