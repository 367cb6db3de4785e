from pathlib import Path

from fastapi import FastAPI

from quark_mailer import devbox
from quark_mailer.events import mail, sms
from quark_mailer.models import Base
from quark_mailer.runtime import MailerRuntime, build_runtime
from quark_mailer.settings import MailerSettings
from quark_sdk.app import QuarkModule, ServiceContext, create_service_app


async def apply_delivery_schedule(ctx: ServiceContext[MailerSettings, MailerRuntime]) -> None:
    """The delivery schedule, before the first event arrives: the SDK's consumer retries with `backoff`
    (one pause per delivery) and dead-letters after `max_deliver`."""
    for consumer in (mail, sms):
        consumer.max_deliver = ctx.settings.max_attempts
        consumer.backoff = ctx.settings.retry_backoff


module = QuarkModule(
    name="mailer",
    settings_cls=MailerSettings,
    root=Path(__file__).resolve().parent.parent,
    runtime=build_runtime,
    routers=[devbox.router, devbox.sms_router],
    metadata=Base.metadata,
    consumers=[mail, sms],
    on_startup=[apply_delivery_schedule],
    title="Quark mailer",
)


def create_app() -> FastAPI:
    return create_service_app(module)
