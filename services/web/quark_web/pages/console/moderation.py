"""The moderation queue (`/console/moderation`): cases oldest first with filters, a case with its content in
context (the post excerpt, the thread around a message) and the decision form."""

from __future__ import annotations

import contextlib
import uuid
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Form, Path, Query, Request, Response

from quark_web.pagekit import Redirect, WebRoute, page_of

router = APIRouter(route_class=WebRoute, include_in_schema=False)
API = "/api/v1/moderation"
KINDS = ("post", "comment", "chat_message", "media", "profile")
STATES = ("open", "actioned", "dismissed")
SOURCES = ("user", "ai")
Filter = Annotated[str | None, Query(max_length=16)]


@router.get("/console/moderation")
async def queue(request: Request, state: Filter = None, kind: Filter = None, source: Filter = None,
                cursor: Annotated[str | None, Query(max_length=400)] = None) -> Response:
    page = page_of(request)
    page.require_user()
    params = {k: v for k, v in {"state": state if state in STATES else None, "kind": kind if kind in KINDS else None,
                                "source": source if source in SOURCES else None}.items() if v}
    listing: dict[str, Any] = await page.call("GET", f"{API}/cases", params={**params, "limit": 20,
                                                                             **({"cursor": cursor} if cursor else {})})
    nxt = f"/console/moderation?{urlencode({**params, 'cursor': listing['next_cursor']})}" \
        if listing.get("next_cursor") else None
    return page.render("console/moderation.html", listing=listing, filters=params, kinds=KINDS, states=STATES,
                       sources=SOURCES, next_url=nxt, section="moderation")


@router.get("/console/moderation/{case_id}")
async def case(request: Request, case_id: uuid.UUID) -> Response:
    page = page_of(request)
    page.require_user()
    detail: dict[str, Any] = await page.call("GET", f"{API}/cases/{case_id}")
    return page.render("console/case.html", case=detail, decision_id=str(uuid.uuid4()), section="moderation")


@router.post("/console/moderation/{case_id}/decide")
async def decide(request: Request, case_id: uuid.UUID, action: Annotated[str, Form(max_length=16)],
                 reason: Annotated[str, Form(max_length=1000)] = "",
                 duration_hours: Annotated[str, Form(max_length=8)] = "",
                 decision_id: Annotated[str, Form(max_length=64)] = "") -> Response:
    """The decision form: the decision id comes with the form, so a double submit is one decision."""
    page = page_of(request)
    page.require_user()
    body: dict[str, Any] = {"action": action, "reason": reason}
    if duration_hours.strip():
        body["duration_hours"] = int(duration_hours) if duration_hours.strip().isdigit() else duration_hours
    with contextlib.suppress(ValueError):
        body["decision_id"] = str(uuid.UUID(decision_id))
    await page.call("POST", f"{API}/cases/{case_id}/decisions", json=body)
    raise Redirect(f"/console/moderation/{case_id}")


# -- reporting (the buttons on chat messages and profiles) ------------------------------------------------------

Reason = Annotated[str, Form(max_length=1000)]


async def _reported(page: Any, back: str) -> Response:
    if not page.htmx:
        raise Redirect(back)
    return page.render("console/reported.html")


@router.post("/report/message/{chat_id}/{message_id}")
async def report_message(request: Request, chat_id: uuid.UUID,
                         message_id: Annotated[int, Path(ge=1, le=2**63 - 1)], reason: Reason = "") -> Response:
    """A participant reports a message to the moderators (the messaging module checks who may)."""
    page = page_of(request)
    page.require_user()
    await page.call("POST", f"/api/v1/messages/{message_id}/report", json={"reason": reason.strip() or "—"})
    return await _reported(page, f"/messages/{chat_id}")


@router.post("/report/profile/{username}")
async def report_profile(request: Request, username: Annotated[str, Path(min_length=1, max_length=64,
                                                                         pattern=r"^[A-Za-z0-9_.-]+$")],
                         reason: Reason = "") -> Response:
    page = page_of(request)
    page.require_user()
    await page.call("POST", f"/api/v1/users/{username}/report", json={"reason": reason.strip() or "—"})
    return await _reported(page, f"/people/{username}")
