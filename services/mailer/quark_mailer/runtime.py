"""What a running mailer instance holds beside the SDK context: its renderer and its SMTP sender.

Event handlers get only (session, event); they find their instance's runtime through the session's
database (`session.info["quark_db"]`), so several instances in one process never mix up their relays.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import cast

import httpx
from sqlalchemy.ext.asyncio import AsyncSession

from quark_mailer.render import Renderer
from quark_mailer.settings import MailerSettings
from quark_mailer.smtp import SmtpSender
from quark_sdk.app import ServiceContext
from quark_sdk.db import Database

EXTRAS_KEY = "mailer"


@dataclass
class MailerRuntime:
    settings: MailerSettings
    renderer: Renderer
    sender: SmtpSender
    http: httpx.AsyncClient  # auth's public API through the gateway (landing.py)


_BY_DB: weakref.WeakKeyDictionary[Database, MailerRuntime] = weakref.WeakKeyDictionary()


def install(ctx: ServiceContext) -> MailerRuntime:
    settings = cast(MailerSettings, ctx.settings)
    rt = MailerRuntime(settings=settings, renderer=Renderer(settings), sender=SmtpSender(settings),
                       http=httpx.AsyncClient(base_url=settings.gateway_url, timeout=10))
    ctx.extras[EXTRAS_KEY] = rt
    _BY_DB[ctx.database()] = rt
    return rt


def runtime_of(ctx: ServiceContext) -> MailerRuntime:
    rt = ctx.extras.get(EXTRAS_KEY)
    if rt is None:
        raise RuntimeError("mailer runtime not installed (startup not finished)")
    return cast(MailerRuntime, rt)


async def close(ctx: ServiceContext) -> None:
    rt = ctx.extras.pop(EXTRAS_KEY, None)
    if rt is not None:
        await cast(MailerRuntime, rt).http.aclose()


def runtime_for_session(session: AsyncSession) -> MailerRuntime:
    db = session.info.get("quark_db")
    rt = _BY_DB.get(db) if db is not None else None
    if rt is None:
        raise RuntimeError("mailer runtime not installed for this database (startup not finished)")
    return rt
