"""`/dev/mail`: the dev mailbox — every mail the local SMTP sink of `quark dev` received, newest first — and
`/dev/sms`, the SMS the dev SMS driver kept.

Only outside prod (the router is not even mounted there: 404). It reads the sink's files under
`<data_dir>/mail/` (quark_sdk.devmail), so it shows what really went over SMTP, whichever process sent it.
"""

from __future__ import annotations

import html
import re
from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.responses import HTMLResponse, Response
from markupsafe import Markup

from quark_mailer.pages import page
from quark_mailer.settings import MailerSettings
from quark_mailer.sms import DevSmsSink
from quark_sdk.app import SettingsDep
from quark_sdk.devmail import Mailbox
from quark_sdk.errors import NotFound

Settings = Annotated[MailerSettings, SettingsDep]


async def dev_only(settings: Settings) -> None:
    """Production has no dev mailbox: every path under /dev/mail is a 404 there."""
    if settings.env == "prod" or not settings.dev_mailbox:
        raise NotFound("no dev mailbox in production")


router = APIRouter(prefix="/dev/mail", tags=["dev mailbox"], include_in_schema=False,
                   dependencies=[Depends(dev_only)])

_URL = re.compile(r"https?://[^\s<>\"']+")
# The HTML part is shown as its own document, sandboxed: no script, no form, links open in a new tab.
HTML_PART_CSP = "sandbox allow-popups allow-popups-to-escape-sandbox allow-top-navigation-by-user-activation; " \
                "default-src 'none'; style-src 'unsafe-inline'; img-src data:"


def mailbox(settings: MailerSettings) -> Mailbox:
    return Mailbox(settings.data_dir / "mail")


def linkify(text: str) -> Markup:
    """Plain text as HTML with every http(s) URL a clickable link (everything else escaped)."""
    out, last = [], 0
    for m in _URL.finditer(text):
        out.append(html.escape(text[last:m.start()]))
        url = html.escape(m.group(0))
        out.append(f'<a href="{url}">{url}</a>')
        last = m.end()
    out.append(html.escape(text[last:]))
    return Markup("".join(out))  # noqa: S704 - every piece above is escaped


@router.get("", response_class=HTMLResponse)
async def list_mail(settings: Settings) -> Response:
    box = mailbox(settings)
    return page("mailbox.html", mails=box.list(), directory=str(box.directory))


@router.get("/{mail_id}", response_class=HTMLResponse)
async def show_mail(mail_id: str, settings: Settings) -> Response:
    mail = mailbox(settings).get(mail_id)
    if mail is None:
        raise NotFound(f"no mail {mail_id} in the dev mailbox")
    return page("mail.html", mail=mail, text=linkify(mail.text))


@router.get("/{mail_id}/html", response_class=HTMLResponse)
async def show_mail_html(mail_id: str, settings: Settings) -> Response:
    mail = mailbox(settings).get(mail_id)
    if mail is None or mail.html is None:
        raise NotFound(f"no HTML part of mail {mail_id} in the dev mailbox")
    return HTMLResponse(mail.html, headers={"Content-Security-Policy": HTML_PART_CSP, "Cache-Control": "no-store"})


# `/dev/sms`: what the dev SMS sink received (the `dev` SMS driver), newest first, codes readable. Same rule:
# never in production.
sms_router = APIRouter(prefix="/dev/sms", tags=["dev mailbox"], include_in_schema=False,
                       dependencies=[Depends(dev_only)])


@sms_router.get("", response_class=HTMLResponse)
async def list_sms(settings: Settings) -> Response:
    sink = DevSmsSink(settings.data_dir / "sms")
    return page("sms.html", messages=sink.list(), directory=str(sink.directory))
