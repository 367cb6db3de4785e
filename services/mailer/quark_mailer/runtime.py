"""What a running mailer instance holds beside the SDK context: its renderer and its SMTP sender.

Built once per running instance by the SDK (`QuarkModule(runtime=build_runtime)`) and handed to
routes (`Runtime`) and the event handler (its first argument), so several instances in one process
never mix up their relays.
"""

from __future__ import annotations

from dataclasses import dataclass

import httpx

from quark_mailer.render import Renderer
from quark_mailer.settings import MailerSettings
from quark_mailer.smtp import SmtpSender
from quark_sdk.app import ServiceContext


@dataclass
class MailerRuntime:
    settings: MailerSettings
    renderer: Renderer
    sender: SmtpSender
    http: httpx.AsyncClient  # auth's public API through the gateway (landing.py)

    async def aclose(self) -> None:
        await self.http.aclose()


async def build_runtime(ctx: ServiceContext[MailerSettings, MailerRuntime]) -> MailerRuntime:
    settings = ctx.settings
    return MailerRuntime(settings=settings, renderer=Renderer(settings), sender=SmtpSender(settings),
                         http=httpx.AsyncClient(base_url=settings.gateway_url, timeout=10))
