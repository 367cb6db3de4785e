"""The auth module: how it docks (`module`) and its app factory."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from fastapi import FastAPI

from quark_auth.api import router
from quark_auth.api_identity import router as identity_router
from quark_auth.commands import create_admin_command
from quark_auth.common import ISSUER
from quark_auth.events import suspensions
from quark_auth.keys import KeyManager
from quark_auth.models import Base
from quark_auth.passwords import PasswordHasher
from quark_auth.runtime import AuthRuntime
from quark_auth.sessions import purge_expired
from quark_auth.settings import AuthSettings
from quark_sdk.app import QuarkModule, ServiceContext, create_service_app
from quark_sdk.auth import TokenVerifier
from quark_sdk.ratelimit import RateLimiter

log = logging.getLogger("quark.auth")

PURGE_INTERVAL = 3600.0


AuthContext = ServiceContext[AuthSettings, AuthRuntime]


async def build_runtime(ctx: AuthContext) -> AuthRuntime:
    """Load (or create) the signing keys and build the hasher, limiter and local token verifier."""
    settings = ctx.settings
    redis = ctx.cache()
    keys = KeyManager(settings.secret_store(), path=settings.signing_keys_path, algorithm=settings.signing_algorithm,
                      overlap=settings.key_overlap, rotate_after=settings.rotate_after, redis=redis,
                      lock_key=ctx.key("signing-keys", "lock"))
    await keys.load()
    if settings.env == "dev":
        log.warning("QUARK_ENV=dev: verification and password-reset links (live tokens) are logged on "
                    "quark.auth.mail; never run a production station with QUARK_ENV=dev")
    hasher = await asyncio.to_thread(PasswordHasher, settings.bcrypt_rounds)
    verifier = keys.verifier(settings.token_audience)
    trust_own_keys(ctx, verifier)
    return AuthRuntime(
        settings=settings, keys=keys, hasher=hasher, redis=redis, limiter=RateLimiter(redis, prefix=ctx.key()),
        verifier=verifier, key_prefix=ctx.key(),
    )


def trust_own_keys(ctx: AuthContext, own: TokenVerifier) -> None:
    """The app's token verifier (the one the SDK's principals use) takes auth's tokens from auth's own
    keys in memory, not from its JWKS over the gateway.

    It does not consult the revocation list here: every authenticated route of auth checks the token's
    session in auth's own database, which covers deleted accounts (sessions gone: 401), suspended ones
    (403 account-suspended, saying why) and more (logout, revoked sessions)."""
    if ctx.verifier is None:
        return
    ctx.verifier.sources[ISSUER] = own.sources[ISSUER]
    ctx.verifier.revocations = None


async def key_rotation(ctx: AuthContext) -> None:
    """Re-read the key store (pick up other instances' rotations) and rotate when the active key is due."""
    rt = ctx.runtime
    while True:
        await asyncio.sleep(rt.settings.key_refresh_interval)
        try:
            await rt.keys.tick()
        except Exception:
            log.exception("signing-key rotation round failed; retrying next interval")


async def purge(ctx: AuthContext) -> None:
    """Hourly: drop expired refresh tokens, old sessions and spent one-time tokens."""
    rt = ctx.runtime
    while True:
        await asyncio.sleep(PURGE_INTERVAL)
        async with ctx.database().session() as session:
            counts = await purge_expired(session, rt)
        if any(counts.values()):
            log.info("purged %s", counts)


module = QuarkModule(
    name="auth",
    settings_cls=AuthSettings,
    root=Path(__file__).resolve().parent.parent,
    runtime=build_runtime,
    routers=[router, identity_router],
    metadata=Base.metadata,
    consumers=[suspensions],
    background=[key_rotation, purge],
    commands=[create_admin_command],
    title="Quark auth",
)


def create_app() -> FastAPI:
    return create_service_app(module)
