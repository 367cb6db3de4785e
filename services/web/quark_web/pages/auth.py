"""Signing up and in: register, confirm the email, log in (with the 2FA step), forgot/reset password,
sign out, and the list of one's sessions (devices) with revoke. Every call goes to the auth module's API."""

from __future__ import annotations

import contextlib
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Form, Query, Request, Response

from quark_web import errors
from quark_web.apiclient import ApiError, ModuleDown
from quark_web.pagekit import Page, Redirect, WebRoute, page_of, safe_next

router = APIRouter(route_class=WebRoute, include_in_schema=False)
AUTH = "/api/v1/auth"
Text = Annotated[str, Form(max_length=1000)]


def _client_headers(page: Page) -> dict[str, str]:
    """The browser's user agent and address, so the person's session list names their device."""
    req = page.request
    headers = {}
    if ua := req.headers.get("user-agent"):
        headers["User-Agent"] = ua[:256]
    if req.client:
        headers["X-Forwarded-For"] = req.client.host
    return headers


def _form_error(page: Page, template: str, exc: ApiError, **values: Any) -> Response:
    if isinstance(exc, ModuleDown):
        raise exc  # the page-level "not available right now", not a form error
    return page.render(template, status=exc.status if 400 <= exc.status < 500 else 502,
                       error=errors.human(exc), field_errors=errors.field_errors(exc), **values)


# -- register, verify --------------------------------------------------------------------------


@router.get("/register")
async def register_form(request: Request) -> Response:
    page = page_of(request)
    if page.user:
        raise Redirect("/")
    return page.render("auth/register.html", values={})


@router.post("/register")
async def register(request: Request, username: Text = "", email: Text = "", password: Text = "",
                   display_name: Text = "") -> Response:
    page = page_of(request)
    values = {"username": username, "email": email, "display_name": display_name}
    body: dict[str, Any] = {"username": username.strip(), "email": email.strip(), "password": password}
    if display_name.strip():
        body["display_name"] = display_name.strip()
    try:
        await page.call("POST", f"{AUTH}/register", json=body, headers=_client_headers(page))
        tokens = await page.call("POST", f"{AUTH}/login", json={"login": username.strip(), "password": password},
                                 headers=_client_headers(page))
    except ApiError as exc:
        return _form_error(page, "auth/register.html", exc, values=values)
    if tokens.get("access_token"):
        await page.sign_in(tokens)
    page.notice("registered")
    raise Redirect("/")


@router.get("/verify-email")
async def verify_email(request: Request, token: Annotated[str, Query(max_length=200)] = "") -> Response:
    """The link in the confirmation mail: confirms on arrival (the token is single-use and short-lived)."""
    page = page_of(request)
    if not token:
        return page.render("auth/verify.html", ok=False, error=errors.BY_CODE["invalid-token"])
    try:
        await page.call("POST", f"{AUTH}/verify-email/confirm", json={"token": token})
    except ApiError as exc:
        if isinstance(exc, ModuleDown) or exc.status >= 500:
            raise
        return page.render("auth/verify.html", status=exc.status, ok=False, error=errors.human(exc))
    if page.session is not None:
        page.session.email_verified = True
        if page.sid:
            await page.rt.sessions.save(page.sid, page.session)
    return page.render("auth/verify.html", ok=True)


@router.post("/verify-email/resend")
async def resend_verification(request: Request) -> Response:
    page = page_of(request)
    page.require_user()
    await page.call("POST", f"{AUTH}/verify-email/request")
    page.notice("verify-sent")
    raise Redirect("/settings/sessions")


# -- login, 2FA, logout ----------------------------------------------------------------------------


@router.get("/login")
async def login_form(request: Request, next: Annotated[str | None, Query(max_length=2000)] = None) -> Response:
    page = page_of(request)
    if page.user:
        raise Redirect(safe_next(next))
    return page.render("auth/login.html", next=safe_next(next), values={})


@router.post("/login")
async def login(request: Request, login: Text = "", password: Text = "", next: Text = "/") -> Response:
    page = page_of(request)
    target = safe_next(next)
    try:
        answer = await page.call("POST", f"{AUTH}/login", json={"login": login.strip(), "password": password},
                                 headers=_client_headers(page))
    except ApiError as exc:
        return _form_error(page, "auth/login.html", exc, next=target, values={"login": login})
    if answer.get("mfa_required"):
        pending = await page.rt.sessions.put_pending_mfa(answer["mfa_token"], int(answer.get("expires_in", 300)),
                                                         login.strip())
        return page.render("auth/mfa.html", pending=pending, next=target)
    await page.sign_in(answer)
    raise Redirect(target)


@router.post("/login/mfa")
async def login_mfa(request: Request, pending: Text = "", code: Text = "", next: Text = "/") -> Response:
    page = page_of(request)
    target = safe_next(next)
    state = await page.rt.sessions.get_pending_mfa(pending) if 20 <= len(pending) <= 100 else None
    if state is None:
        return page.render("auth/login.html", status=400, next=target, values={},
                           error=errors.BY_CODE["mfa-token-invalid"])
    code = code.strip().replace(" ", "")
    body: dict[str, Any] = {"mfa_token": state["mfa_token"]}
    body["code" if code.isdigit() and len(code) <= 8 else "recovery_code"] = code
    try:
        tokens = await page.call("POST", f"{AUTH}/login/mfa", json=body, headers=_client_headers(page))
    except ApiError as exc:
        if exc.code == "mfa-token-invalid":
            await page.rt.sessions.drop_pending_mfa(pending)
            return _form_error(page, "auth/login.html", exc, next=target, values={"login": state["login"]})
        return _form_error(page, "auth/mfa.html", exc, pending=pending, next=target)
    await page.rt.sessions.drop_pending_mfa(pending)
    await page.sign_in(tokens)
    raise Redirect(target)


@router.post("/logout")
async def logout(request: Request) -> Response:
    page = page_of(request)
    if page.session is not None:
        # Signed out here whatever auth says; its access token expires on its own.
        with contextlib.suppress(ApiError):
            await page.rt.api.post(f"{AUTH}/logout", token=page.token,
                                   json={"refresh_token": page.session.refresh_token})
    await page.sign_out()
    page.notice("signed-out")
    raise Redirect("/login")


# -- forgot / reset password ---------------------------------------------------------------------


@router.get("/forgot-password")
async def forgot_form(request: Request) -> Response:
    return page_of(request).render("auth/forgot.html", values={})


@router.post("/forgot-password")
async def forgot(request: Request, email: Text = "") -> Response:
    page = page_of(request)
    try:
        await page.call("POST", f"{AUTH}/password-reset/request", json={"email": email.strip()},
                        headers=_client_headers(page))
    except ApiError as exc:
        return _form_error(page, "auth/forgot.html", exc, values={"email": email})
    page.notice("reset-sent")
    raise Redirect("/login")


@router.get("/reset-password")
async def reset_form(request: Request, token: Annotated[str, Query(max_length=200)] = "") -> Response:
    return page_of(request).render("auth/reset.html", token=token)


@router.post("/reset-password")
async def reset(request: Request, token: Text = "", new_password: Text = "") -> Response:
    page = page_of(request)
    try:
        await page.call("POST", f"{AUTH}/password-reset/confirm", json={"token": token, "new_password": new_password})
    except ApiError as exc:
        return _form_error(page, "auth/reset.html", exc, token=token)
    page.notice("password-reset")
    raise Redirect("/login")


# -- sessions ------------------------------------------------------------------------------------


@router.get("/settings/sessions")
async def sessions(request: Request) -> Response:
    page = page_of(request)
    page.require_user()
    listing = await page.call("GET", f"{AUTH}/sessions", params={"limit": 100})
    account = await page.call("GET", f"{AUTH}/me")
    return page.render("auth/sessions.html", sessions=listing["items"], account=account)


@router.post("/settings/sessions/{session_id}/revoke")
async def revoke(session_id: uuid.UUID, request: Request) -> Response:
    page = page_of(request)
    me = page.require_user()
    await page.call("DELETE", f"{AUTH}/sessions/{session_id}")
    if me.auth_session_id == str(session_id):
        await page.sign_out()
        page.notice("signed-out")
        raise Redirect("/login")
    page.notice("session-revoked")
    raise Redirect("/settings/sessions")
