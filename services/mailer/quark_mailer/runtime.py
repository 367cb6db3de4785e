"""What a running mailer instance holds beside the SDK context: its renderer, its SMTP sender and its SMS
driver.

Built once per running instance by the SDK (`QuarkModule(runtime=build_runtime)`) and handed to
routes (`Runtime`) and the event handler (its first argument), so several instances in one process
never mix up their relays.
"""

from __future__ import annotations

from dataclasses import dataclass

from quark_mailer.render import Renderer
from quark_mailer.settings import MailerSettings
from quark_mailer.sms import SmsDriver, sms_driver
from quark_mailer.smtp import SmtpSender
from quark_sdk.app import ServiceContext


@dataclass
class MailerRuntime:
    settings: MailerSettings
    renderer: Renderer
    sender: SmtpSender
    sms: SmsDriver


async def build_runtime(ctx: ServiceContext[MailerSettings, MailerRuntime]) -> MailerRuntime:
    settings = ctx.settings
    return MailerRuntime(settings=settings, renderer=Renderer(settings), sender=SmtpSender(settings),
                         sms=sms_driver(settings))
