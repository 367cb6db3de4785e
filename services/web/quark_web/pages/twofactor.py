"""Two-factor authentication from the settings page: turn TOTP on (the QR code and the secret as text, confirmed
with a code; the recovery codes are shown once), turn it off, and get new recovery codes. Every step is the
auth module's API (`/api/v1/auth/2fa/...`) called with the person's token; nothing is stored here.

The QR code is auth's own server-side PNG (`GET /2fa/qr.png`, segno), fetched as the person and inlined as a
`data:` URL, so the page needs no extra route and the image never sits in a cache.
"""

from __future__ import annotations

import base64
import re
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request, Response

from quark_web import errors
from quark_web.apiclient import ApiError, ModuleDown
from quark_web.pagekit import Page, Redirect, WebRoute, page_of

router = APIRouter(route_class=WebRoute, include_in_schema=False)
AUTH = "/api/v1/auth"
PATH = "/settings/security"
Text = Annotated[str, Form(max_length=1000)]
SECRET = re.compile(r"^[A-Z2-7]{16,128}$")


def _no_store(resp: Response) -> Response:
    """Secrets and recovery codes must never be kept by a browser or a proxy cache."""
    resp.headers["Cache-Control"] = "no-store"
    return resp


async def _qr(page: Page) -> str | None:
    """The pending enrolment's QR code as a data URL (None if auth has none or cannot draw it)."""
    try:
        png = await page.call("GET", f"{AUTH}/2fa/qr.png")
    except ModuleDown:
        raise
    except ApiError:
        return None
    if not isinstance(png, bytes | bytearray) or not bytes(png).startswith(b"\x89PNG"):
        return None
    return "data:image/png;base64," + base64.b64encode(bytes(png)).decode()


def _setup(page: Page, secret: str, qr: str | None, *, status: int = 200, error: str | None = None) -> Response:
    spaced = " ".join(secret[i:i + 4] for i in range(0, len(secret), 4))
    return _no_store(page.render("settings/twofactor.html", status=status, state="setup", secret=secret,
                                 secret_spaced=spaced, qr=qr, error=error))


@router.get(PATH)
async def security(request: Request) -> Response:
    page = page_of(request)
    page.require_user()
    account: dict[str, Any] = await page.call("GET", f"{AUTH}/me")
    return page.render("settings/twofactor.html", state="on" if account.get("mfa_enabled") else "off",
                       account=account)


@router.post(f"{PATH}/2fa/setup")
async def setup(request: Request) -> Response:
    """Start enrolment: a new secret (pending until a code confirms it)."""
    page = page_of(request)
    page.require_user()
    started = await page.call("POST", f"{AUTH}/2fa/setup")
    return _setup(page, str(started["secret"]), await _qr(page))


@router.post(f"{PATH}/2fa/confirm")
async def confirm(request: Request, code: Text = "", secret: Text = "") -> Response:
    """The first code from the app turns 2FA on; the answer shows the recovery codes, this once."""
    page = page_of(request)
    page.require_user()
    secret = secret.strip().replace(" ", "").upper()
    secret = secret if SECRET.fullmatch(secret) else ""
    try:
        answer = await page.call("POST", f"{AUTH}/2fa/confirm", json={"code": code.strip().replace(" ", "")})
    except ModuleDown:
        raise
    except ApiError as exc:
        if exc.code in ("mfa-enabled", "mfa-not-started"):
            raise
        # A wrong code keeps the enrolment pending: the same QR code and secret, and the message.
        message = errors.BY_CODE["invalid-code"] if exc.status in (400, 422) else errors.human(exc)
        return _setup(page, secret, await _qr(page), status=exc.status if exc.status < 500 else 502, error=message)
    return _no_store(page.render("settings/twofactor.html", state="codes", codes=answer["recovery_codes"],
                                 just_enabled=True))


@router.post(f"{PATH}/2fa/recovery-codes")
async def new_codes(request: Request, password: Text = "") -> Response:
    """A fresh set of recovery codes (password required); the old ones stop working."""
    page = page_of(request)
    page.require_user()
    try:
        answer = await page.call("POST", f"{AUTH}/2fa/recovery-codes", json={"password": password})
    except ModuleDown:
        raise
    except ApiError as exc:
        return page.render("settings/twofactor.html", status=exc.status if exc.status < 500 else 502, state="on",
                           error=errors.human(exc), account={})
    return _no_store(page.render("settings/twofactor.html", state="codes", codes=answer["recovery_codes"],
                                 just_enabled=False))


@router.post(f"{PATH}/2fa/disable")
async def disable(request: Request, password: Text = "") -> Response:
    page = page_of(request)
    page.require_user()
    try:
        await page.call("POST", f"{AUTH}/2fa/disable", json={"password": password})
    except ModuleDown:
        raise
    except ApiError as exc:
        if exc.code == "mfa-disabled":
            raise Redirect(PATH) from None
        return page.render("settings/twofactor.html", status=exc.status if exc.status < 500 else 502, state="on",
                           error=errors.human(exc), account={})
    page.notice("mfa-disabled")
    raise Redirect(PATH)
