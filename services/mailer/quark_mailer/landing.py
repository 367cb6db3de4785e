"""Interim confirmation pages: `/verify-email` and `/reset-password`, where auth's mail links point.

They belong to the web client (services/web), which serves the station's pages; until it does, these
minimal pages keep the links working. When the web module serves them, delete this file, its router in
app.py and the two prefixes in module-manifest.yaml (the web module's `/` route then gets them).

A GET shows a form and changes nothing (mail scanners prefetch links); the POST calls auth's public API
through the gateway, as the browser would, and shows what it answered.
"""

from __future__ import annotations

from typing import Annotated

import httpx
from fastapi import APIRouter, Form, Query
from fastapi.responses import HTMLResponse, Response

from quark_mailer.pages import page
from quark_mailer.runtime import MailerRuntime
from quark_sdk.app import RuntimeDep

router = APIRouter(tags=["interim pages"], include_in_schema=False)
Runtime = Annotated[MailerRuntime, RuntimeDep]

Token = Annotated[str, Query(min_length=1, max_length=512, description="the one-time token from the mail")]
TokenField = Annotated[str, Form(min_length=1, max_length=512)]


def _station(rt: Runtime) -> str:
    return rt.settings.station_name


async def _call_auth(rt: Runtime, path: str, body: dict[str, str]) -> tuple[int, str]:
    """POST to auth's public API; (status, problem detail). 503 when auth cannot be reached."""
    try:
        resp = await rt.http.post(path, json=body)
    except httpx.HTTPError:
        return 503, "The account service cannot be reached right now; try again in a moment."
    detail = ""
    if resp.status_code >= 400:
        try:
            detail = str(resp.json().get("detail") or "")
        except ValueError:
            detail = ""
    return resp.status_code, detail


@router.get("/verify-email", response_class=HTMLResponse)
async def verify_email_form(token: Token, rt: Runtime) -> Response:
    return page("confirm.html", title="Confirm your email address", form="verify", token=token, message="",
                ok=True, station=_station(rt))


@router.post("/verify-email", response_class=HTMLResponse)
async def verify_email_submit(token: TokenField, rt: Runtime) -> Response:
    status, detail = await _call_auth(rt, "/api/v1/auth/verify-email/confirm", {"token": token})
    if status == 204:
        return page("confirm.html", title="Email address confirmed", form="", token="", ok=True,
                    message="Thank you: your email address is confirmed.", station=_station(rt))
    message = ("This link is invalid, was used already or has expired: request a new one from your account."
               if status == 400 else detail or "The address could not be confirmed; try again.")
    return page("confirm.html", status=status if 400 <= status < 500 else 503, title="Not confirmed", form="",
                token="", ok=False, message=message, station=_station(rt))


@router.get("/reset-password", response_class=HTMLResponse)
async def reset_password_form(token: Token, rt: Runtime) -> Response:
    return page("confirm.html", title="Choose a new password", form="reset", token=token, message="", ok=True,
                station=_station(rt))


@router.post("/reset-password", response_class=HTMLResponse)
async def reset_password_submit(token: TokenField,
                                new_password: Annotated[str, Form(min_length=1, max_length=1024)],
                                rt: Runtime) -> Response:
    status, detail = await _call_auth(rt, "/api/v1/auth/password-reset/confirm",
                                      {"token": token, "new_password": new_password})
    if status == 204:
        return page("confirm.html", title="Password changed", form="", token="", ok=True,
                    message="Your password is changed and every session signed out: sign in with the new one.",
                    station=_station(rt))
    if status == 422:  # the password policy said no: show why and the form again
        return page("confirm.html", status=422, title="Choose a new password", form="reset", token=token,
                    ok=False, message=detail or "That password is not allowed.", station=_station(rt))
    message = ("This link is invalid, was used already or has expired: request a new one."
               if status == 400 else detail or "The password could not be changed; try again.")
    return page("confirm.html", status=status if 400 <= status < 500 else 503, title="Password not changed",
                form="", token="", ok=False, message=message, station=_station(rt))
