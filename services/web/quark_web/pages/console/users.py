"""User administration (admins): search accounts; one account's roles, sessions, suspension, 2FA and last
login; grant and revoke roles, end sessions, force a password reset (auth's admin API), suspend and reinstate
(the user service's admin API). Every action states a reason; the modules publish the audit events
(`quark.auth.role_changed`, `…sessions_revoked`, `…password_reset_forced`, `quark.user.suspended`).
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Form, Path, Query, Request, Response

from quark_web import errors
from quark_web.apiclient import ApiError, ModuleDown
from quark_web.pagekit import Page, PageError, Redirect, WebRoute
from quark_web.pages.console.access import admin_page, clean_reason

router = APIRouter(route_class=WebRoute, include_in_schema=False)
AUTH = "/api/v1/auth/admin/users"
USERS = "/api/v1/users/admin/users"
ROLES = ("moderator", "admin", "operator")  # grantable from the console ("user" every account keeps)
UserIdP = Annotated[uuid.UUID, Path()]
Reason = Annotated[str, Form(max_length=500)]
RoleP = Annotated[str, Path(pattern="^(moderator|admin|operator)$")]


@router.get("/console/users")
async def users(request: Request, q: Annotated[str | None, Query(max_length=64)] = None,
                cursor: Annotated[str | None, Query(max_length=200)] = None) -> Response:
    page = admin_page(request)
    listing = await page.call("GET", AUTH, params={"q": (q or "").strip().removeprefix("@") or None,
                                                   "cursor": cursor, "limit": 25})
    return page.render("console/users/list.html", listing=listing, q=q or "", section="users")


async def _profile(page: Page, username: str) -> dict[str, Any] | None:
    """The user service's admin view (suspension reason, who suspended); None when it does not know the
    account (yet) or is down — the page then says so instead of failing."""
    try:
        found = await page.call("GET", USERS, params={"q": username, "limit": 5})
    except ModuleDown:
        return None
    return next((p for p in found.get("items", []) if p.get("username", "").lower() == username.lower()), None)


@router.get("/console/users/{user_id}")
async def user_detail(request: Request, user_id: UserIdP) -> Response:
    page = admin_page(request)
    try:
        account = await page.call("GET", f"{AUTH}/{user_id}")
    except ApiError as exc:
        if exc.status == 404 and not isinstance(exc, ModuleDown):
            raise PageError(404, errors.NOT_FOUND) from None
        raise
    profile = await _profile(page, account["username"])
    me = page.user.user_id if page.user else ""
    return page.render("console/users/detail.html", account=account, profile=profile, roles=ROLES,
                       own=str(account["id"]) == me, section="users")


def _back(user_id: uuid.UUID, note: str, page: Page) -> Redirect:
    page.notice(note)
    return Redirect(f"/console/users/{user_id}")


@router.post("/console/users/{user_id}/roles")
async def grant(request: Request, user_id: UserIdP, role: Annotated[str, Form(pattern="^(moderator|admin|operator)$")],
                reason: Reason = "") -> Response:
    page = admin_page(request)
    await page.call("POST", f"{AUTH}/{user_id}/roles", json={"role": role, "reason": clean_reason(reason)})
    raise _back(user_id, "console-role-granted", page)


@router.post("/console/users/{user_id}/roles/{role}/revoke")
async def revoke(request: Request, user_id: UserIdP, role: RoleP, reason: Reason = "") -> Response:
    page = admin_page(request)
    await page.call("DELETE", f"{AUTH}/{user_id}/roles/{role}", params={"reason": clean_reason(reason)})
    raise _back(user_id, "console-role-revoked", page)


@router.post("/console/users/{user_id}/sessions/revoke")
async def end_sessions(request: Request, user_id: UserIdP, reason: Reason = "") -> Response:
    page = admin_page(request)
    await page.call("POST", f"{AUTH}/{user_id}/sessions/revoke-all", json={"reason": clean_reason(reason)})
    raise _back(user_id, "console-sessions-revoked", page)


@router.post("/console/users/{user_id}/password-reset")
async def force_reset(request: Request, user_id: UserIdP, reason: Reason = "") -> Response:
    page = admin_page(request)
    await page.call("POST", f"{AUTH}/{user_id}/password-reset", json={"reason": clean_reason(reason)})
    raise _back(user_id, "console-reset-forced", page)


async def _username(page: Page, user_id: uuid.UUID) -> str:
    account = await page.call("GET", f"{AUTH}/{user_id}")
    return str(account["username"])


@router.post("/console/users/{user_id}/suspend")
async def suspend(request: Request, user_id: UserIdP, reason: Reason = "",
                  duration_hours: Annotated[int, Form(ge=0, le=8760)] = 0) -> Response:
    """0 hours: until reinstated; otherwise the user service lifts it when the time is up."""
    page = admin_page(request)
    username = await _username(page, user_id)
    body: dict[str, Any] = {"reason": clean_reason(reason)}
    if duration_hours:
        body["duration_hours"] = duration_hours
    await page.call("POST", f"{USERS}/{username}/suspend", json=body)
    raise _back(user_id, "console-suspended", page)


@router.post("/console/users/{user_id}/unsuspend")
async def unsuspend(request: Request, user_id: UserIdP) -> Response:
    page = admin_page(request)
    username = await _username(page, user_id)
    await page.call("POST", f"{USERS}/{username}/unsuspend")
    raise _back(user_id, "console-unsuspended", page)
