"""Everything a running web instance holds, in one object built by a startup hook.

Routes reach it through `runtime(request)`; nothing lives in module globals, so several instances in
one process (tests, the embedded station) never share state.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass, field
from typing import Any, cast

import httpx
import redis.asyncio as aioredis
from fastapi import Request

from quark_sdk.app import ServiceContext
from quark_web.apiclient import Api
from quark_web.assets import Assets
from quark_web.settings import WebSettings

EXTRA = "web"


@dataclass
class WebRuntime:
    ctx: ServiceContext
    api: Api
    assets: Assets
    csrf_secret: bytes
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def settings(self) -> WebSettings:
        return cast(WebSettings, self.ctx.settings)

    @property
    def redis(self) -> aioredis.Redis:
        return self.ctx.cache()

    @property
    def sessions(self) -> Any:
        from quark_web.sessions import SessionStore

        return SessionStore(self)

    def csrf_token(self, nonce: str) -> str:
        return hmac.new(self.csrf_secret, nonce.encode(), "sha256").hexdigest()

    async def close(self) -> None:
        await self.api.client.aclose()


async def _shared_secret(ctx: ServiceContext, settings: WebSettings) -> bytes:
    """The CSRF secret: configured, or one random value every instance shares through Valkey."""
    if settings.csrf_secret is not None:
        return settings.csrf_secret.get_secret_value().encode()
    key = ctx.key("csrf-secret")
    redis = ctx.cache()
    await redis.set(key, secrets.token_hex(32), nx=True)
    value = await redis.get(key)
    return value if isinstance(value, bytes) else str(value).encode()


async def install(ctx: ServiceContext) -> None:
    settings = cast(WebSettings, ctx.settings)
    client = httpx.AsyncClient(base_url=settings.api_base(), timeout=settings.api_timeout,
                               headers={"User-Agent": "quark-web/0.1"})
    ctx.extras[EXTRA] = WebRuntime(ctx=ctx, api=Api(client), assets=Assets.load(),
                                   csrf_secret=await _shared_secret(ctx, settings))


async def close(ctx: ServiceContext) -> None:
    rt = ctx.extras.pop(EXTRA, None)
    if rt is not None:
        await rt.close()


def runtime_of(ctx: ServiceContext) -> WebRuntime:
    return cast(WebRuntime, ctx.extras[EXTRA])


def runtime(request: Request) -> WebRuntime:
    return runtime_of(request.app.state.quark)
