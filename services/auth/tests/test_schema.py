"""Migration 0003 (phones, provider identities) and the ones before build exactly the schema of the models,
and the API documents name the new routes and events."""

from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from quark_auth.app import module
from quark_auth.models import Base
from quark_sdk.apidocs import asyncapi_document
from quark_sdk.app import create_service_app
from quark_sdk.outbox import EVENT_METADATA
from quark_sdk.testing import QuarkTestEnv


async def test_migrations_match_the_models(quark: QuarkTestEnv) -> None:
    svc = await quark.start(module, bcrypt_rounds=4)

    def diff(connection: Any) -> list[Any]:
        ctx = MigrationContext.configure(connection, opts={"compare_type": True})
        return list(compare_metadata(ctx, [Base.metadata, EVENT_METADATA]))

    async with svc.ctx.database().engine.connect() as conn:
        changes = await conn.run_sync(diff)
    assert changes == []


def test_openapi_and_asyncapi_build() -> None:
    app = create_service_app(module, module.settings_cls.load(env="dev"), migrate_on_start=False)
    paths = app.openapi()["paths"]
    for path in ("/api/v1/auth/oidc/{provider}/authorize", "/api/v1/auth/oidc/{provider}/callback",
                 "/api/v1/auth/oidc/signup", "/api/v1/auth/login/phone", "/api/v1/auth/register/phone/confirm",
                 "/api/v1/auth/phone"):
        assert path in paths
    channels = asyncapi_document([module])["channels"]
    for name in ("quark_auth_sms_requested", "quark_auth_phone_verified", "quark_auth_phone_removed"):
        assert name in channels
