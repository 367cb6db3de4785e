from pathlib import Path
from typing import cast

from fastapi import FastAPI

from quark_mailer import devbox, landing, runtime
from quark_mailer.events import mail
from quark_mailer.models import Base
from quark_mailer.settings import MailerSettings
from quark_sdk.app import QuarkModule, ServiceContext, create_service_app


async def start_runtime(ctx: ServiceContext) -> None:
    """Renderer, SMTP sender and the delivery schedule, before the first event arrives."""
    settings = cast(MailerSettings, ctx.settings)
    runtime.install(ctx)
    # The SDK's consumer retries with `backoff` (one pause per delivery) and dead-letters after `max_deliver`.
    mail.max_deliver = settings.max_attempts
    mail.backoff = settings.retry_backoff


async def stop_runtime(ctx: ServiceContext) -> None:
    await runtime.close(ctx)


module = QuarkModule(
    name="mailer",
    settings_cls=MailerSettings,
    root=Path(__file__).resolve().parent.parent,
    routers=[devbox.router, landing.router],
    metadata=Base.metadata,
    consumers=[mail],
    on_startup=[start_runtime],
    on_shutdown=[stop_runtime],
    title="Quark mailer",
)


def create_app() -> FastAPI:
    return create_service_app(module)
