"""Signing up and in: register (by email or phone), confirm the email or the phone's SMS code, log in (password,
phone + SMS code, or a provider such as Google / GitHub / any OIDC issuer; with the 2FA step), forgot/reset
password, sign out, and the account settings (sessions with revoke, phone, linked providers). Every call goes
to the auth module's API."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Form, Path, Query, Request, Response

from quark_web import errors
from quark_web.apiclient import ApiError, ModuleDown
from quark_web.pagekit import Page, Redirect, WebRoute, page_of, safe_next

router = APIRouter(route_class=WebRoute, include_in_schema=False)
AUTH = "/api/v1/auth"
Text = Annotated[str, Form(max_length=1000)]
ProviderName = Annotated[str, Path(min_length=1, max_length=32, pattern=r"^[a-z0-9][a-z0-9_-]*$")]
OIDC_COOKIE = "quark_oidc"  # binds a provider sign-in to the browser that started it (login CSRF)


async def _providers(page: Page) -> list[dict[str, Any]]:
    """The station's sign-in providers for the buttons; none when auth cannot say."""
    try:
        answer = await page.rt.api.request("GET", f"{AUTH}/oidc/providers")
    except ApiError:
        return []
    items: list[dict[str, Any]] = answer.get("items", []) if isinstance(answer, dict) else []
    return items


def _base_url(page: Page) -> str:
    return (page.rt.settings.public_url or str(page.request.base_url)).rstrip("/")


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
    return page.render("auth/register.html", values={}, providers=await _providers(page))


@router.post("/register")
async def register(request: Request, username: Text = "", email: Text = "", password: Text = "",
                   display_name: Text = "", phone: Text = "") -> Response:
    page = page_of(request)
    values = {"username": username, "email": email, "display_name": display_name, "phone": phone}
    body: dict[str, Any] = {"username": username.strip(), "password": password}
    if email.strip():
        body["email"] = email.strip()
    if phone.strip():
        body["phone"] = phone.strip()
    if display_name.strip():
        body["display_name"] = display_name.strip()
    if "email" not in body and "phone" not in body:
        return page.render("auth/register.html", status=422, values=values, providers=await _providers(page),
                           error="Give an email address or a phone number.")
    try:
        created = await page.call("POST", f"{AUTH}/register", json=body, headers=_client_headers(page))
        if "email" not in body:  # by phone: the SMS code confirms the number and signs in
            return page.render("auth/phone_code.html", phone=body["phone"], action="/register/phone/confirm",
                               purpose="register", next="/")
        tokens = await page.call("POST", f"{AUTH}/login", json={"login": username.strip(), "password": password},
                                 headers=_client_headers(page))
    except ApiError as exc:
        return _form_error(page, "auth/register.html", exc, values=values, providers=await _providers(page))
    del created
    if tokens.get("access_token"):
        await page.sign_in(tokens)
    page.notice("registered")
    raise Redirect("/")


@router.get("/verify-email")
async def verify_email_form(request: Request, token: Annotated[str, Query(max_length=200)] = "") -> Response:
    """The link in the confirmation mail opens a page with one button; only the person's click (a POST)
    confirms. Mail scanners and link previews follow links with GET, and must not confirm an address the
    person never meant to (the token would be spent, too)."""
    page = page_of(request)
    if not token:
        return page.render("auth/verify.html", ok=False, error=errors.BY_CODE["invalid-token"])
    return page.render("auth/verify.html", confirm=True, token=token)


@router.post("/verify-email")
async def verify_email(request: Request, token: Annotated[str, Form(max_length=200)] = "") -> Response:
    page = page_of(request)
    if not token:
        return page.render("auth/verify.html", status=400, ok=False, error=errors.BY_CODE["invalid-token"])
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
    return page.render("auth/login.html", next=safe_next(next), values={}, providers=await _providers(page))


@router.post("/login")
async def login(request: Request, login: Text = "", password: Text = "", next: Text = "/") -> Response:
    page = page_of(request)
    target = safe_next(next)
    try:
        answer = await page.call("POST", f"{AUTH}/login", json={"login": login.strip(), "password": password},
                                 headers=_client_headers(page))
    except ApiError as exc:
        return _form_error(page, "auth/login.html", exc, next=target, values={"login": login},
                           providers=await _providers(page))
    return await _finish(page, answer, target, login.strip())


async def _finish(page: Page, answer: dict[str, Any], target: str, login: str) -> Response:
    """After any first factor: the 2FA step (authenticator or SMS) or signed in."""
    if answer.get("mfa_required"):
        pending = await page.rt.sessions.put_pending_mfa(answer["mfa_token"], int(answer.get("expires_in", 300)),
                                                         login)
        return page.render("auth/mfa.html", pending=pending, next=target, channel=answer.get("channel", "totp"))
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
    return await _settings(page)


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


# -- phone: registration code, sign-in by SMS code ------------------------------------------------------


@router.post("/register/phone/confirm")
async def register_phone_confirm(request: Request, phone: Text = "", code: Text = "") -> Response:
    page = page_of(request)
    try:
        answer = await page.call("POST", f"{AUTH}/register/phone/confirm",
                                 json={"phone": phone.strip(), "code": code.strip()}, headers=_client_headers(page))
    except ApiError as exc:
        return _form_error(page, "auth/phone_code.html", exc, phone=phone, action="/register/phone/confirm",
                           purpose="register", next="/")
    return await _finish(page, answer, "/", phone.strip())


@router.get("/login/phone")
async def login_phone_form(request: Request, next: Annotated[str | None, Query(max_length=2000)] = None) -> Response:
    page = page_of(request)
    return page.render("auth/login_phone.html", next=safe_next(next), values={})


@router.post("/login/phone")
async def login_phone(request: Request, phone: Text = "", next: Text = "/") -> Response:
    page = page_of(request)
    target = safe_next(next)
    try:
        await page.call("POST", f"{AUTH}/login/phone/code", json={"phone": phone.strip()},
                        headers=_client_headers(page))
    except ApiError as exc:
        return _form_error(page, "auth/login_phone.html", exc, next=target, values={"phone": phone})
    return page.render("auth/phone_code.html", phone=phone.strip(), action="/login/phone/confirm", purpose="login",
                       next=target)


@router.post("/login/phone/confirm")
async def login_phone_confirm(request: Request, phone: Text = "", code: Text = "", next: Text = "/") -> Response:
    page = page_of(request)
    target = safe_next(next)
    try:
        answer = await page.call("POST", f"{AUTH}/login/phone", json={"phone": phone.strip(), "code": code.strip()},
                                 headers=_client_headers(page))
    except ApiError as exc:
        return _form_error(page, "auth/phone_code.html", exc, phone=phone, action="/login/phone/confirm",
                           purpose="login", next=target)
    return await _finish(page, answer, target, phone.strip())


# -- providers (OIDC / OAuth2) ------------------------------------------------------------------------------


def _state_mac(page: Page, state: str) -> str:
    return hmac.new(page.csrf.encode(), state.encode(), hashlib.sha256).hexdigest()


@router.get("/login/oidc/{provider}")
async def oidc_start(provider: ProviderName, request: Request,
                     intent: Annotated[str, Query(pattern="^(login|link)$")] = "login") -> Response:
    """A plain link (the CSP allows forms to post only here): to the provider's sign-in page."""
    page = page_of(request)
    if intent == "link":
        page.require_user()
    answer = await page.call("POST", f"{AUTH}/oidc/{provider}/authorize", headers=_client_headers(page), json={
        "redirect_uri": f"{_base_url(page)}/login/oidc/{provider}/callback", "intent": intent})
    # The state goes back only to this browser: a callback with someone else's state is refused.
    page.set_cookie(OIDC_COOKIE, _state_mac(page, answer["state"]), max_age=int(answer.get("expires_in", 600)))
    raise Redirect(answer["authorization_url"])


@router.get("/login/oidc/{provider}/callback")
async def oidc_callback(provider: ProviderName, request: Request,
                        code: Annotated[str, Query(max_length=2048)] = "",
                        state: Annotated[str, Query(max_length=128)] = "",
                        error: Annotated[str | None, Query(max_length=200)] = None) -> Response:
    page = page_of(request)
    bound = request.cookies.get(OIDC_COOKIE, "")
    page.set_cookie(OIDC_COOKIE, None)
    if error or not code or not state or not hmac.compare_digest(bound, _state_mac(page, state)):
        return page.render("auth/login.html", status=400, next="/", values={}, providers=await _providers(page),
                           error="The sign-in with the provider did not complete. Try again.")
    try:
        answer = await page.call("POST", f"{AUTH}/oidc/{provider}/callback", json={"code": code, "state": state},
                                 headers=_client_headers(page))
    except ApiError as exc:
        if isinstance(exc, ModuleDown):
            raise
        if page.session is not None:  # a link from the settings
            return await _settings(page, status=exc.status if 400 <= exc.status < 500 else 502,
                                   error=errors.human(exc))
        return _form_error(page, "auth/login.html", exc, next="/", values={}, providers=await _providers(page))
    if answer.get("linked"):
        page.notice("post-saved")  # "Saved."
        raise Redirect("/settings/sessions")
    if answer.get("signup_required"):
        return page.render("auth/oidc_signup.html", offer=answer, values={
            "username": answer.get("suggested_username") or "", "display_name": answer.get("display_name") or ""})
    return await _finish(page, answer, "/", provider)


@router.post("/login/oidc/signup")
async def oidc_signup(request: Request, signup_token: Text = "", username: Text = "", display_name: Text = "",
                      provider: Text = "", email: Text = "") -> Response:
    page = page_of(request)
    body: dict[str, Any] = {"signup_token": signup_token, "username": username.strip()}
    if display_name.strip():
        body["display_name"] = display_name.strip()
    try:
        answer = await page.call("POST", f"{AUTH}/oidc/signup", json=body, headers=_client_headers(page))
    except ApiError as exc:
        offer = {"signup_token": signup_token, "provider": provider, "email": email or None}
        return _form_error(page, "auth/oidc_signup.html", exc, offer=offer,
                           values={"username": username, "display_name": display_name})
    return await _finish(page, answer, "/", username.strip())


# -- settings: phone, linked providers ----------------------------------------------------------------------


@router.post("/settings/phone")
async def settings_phone(request: Request, phone: Text = "", password: Text = "") -> Response:
    page = page_of(request)
    page.require_user()
    body: dict[str, Any] = {"phone": phone.strip()}
    if password:
        body["password"] = password
    try:
        await page.call("POST", f"{AUTH}/phone", json=body)
    except ApiError as exc:
        if isinstance(exc, ModuleDown):
            raise
        return await _settings(page, status=exc.status if 400 <= exc.status < 500 else 502, error=errors.human(exc),
                               values={"phone": phone})
    return page.render("auth/phone_code.html", phone=phone.strip(), action="/settings/phone/confirm",
                       purpose="attach", next="/settings/sessions")


@router.post("/settings/phone/confirm")
async def settings_phone_confirm(request: Request, phone: Text = "", code: Text = "") -> Response:
    page = page_of(request)
    page.require_user()
    try:
        await page.call("POST", f"{AUTH}/phone/confirm", json={"code": code.strip()})
    except ApiError as exc:
        return _form_error(page, "auth/phone_code.html", exc, phone=phone, action="/settings/phone/confirm",
                           purpose="attach", next="/settings/sessions")
    page.notice("post-saved")  # "Saved."
    raise Redirect("/settings/sessions")


@router.post("/settings/phone/remove")
async def settings_phone_remove(request: Request, password: Text = "") -> Response:
    page = page_of(request)
    page.require_user()
    try:
        await page.call("DELETE", f"{AUTH}/phone", json={"password": password} if password else None)
    except ApiError as exc:
        if isinstance(exc, ModuleDown):
            raise
        return await _settings(page, status=exc.status if 400 <= exc.status < 500 else 502, error=errors.human(exc))
    page.notice("post-saved")  # "Saved."
    raise Redirect("/settings/sessions")


@router.post("/settings/providers/{provider}/unlink")
async def settings_unlink(provider: ProviderName, request: Request) -> Response:
    page = page_of(request)
    page.require_user()
    try:
        await page.call("DELETE", f"{AUTH}/oidc/identities/{provider}")
    except ApiError as exc:
        if isinstance(exc, ModuleDown):
            raise
        return await _settings(page, status=exc.status if 400 <= exc.status < 500 else 502, error=errors.human(exc))
    page.notice("post-saved")  # "Saved."
    raise Redirect("/settings/sessions")


async def _settings(page: Page, status: int = 200, **extra: Any) -> Response:
    listing = await page.call("GET", f"{AUTH}/sessions", params={"limit": 100})
    account = await page.call("GET", f"{AUTH}/me")
    linked = await page.call("GET", f"{AUTH}/oidc/identities")
    return page.render("auth/sessions.html", status=status, sessions=listing["items"], account=account,
                       identities=linked["items"], providers=await _providers(page), **extra)
