"""Managing group chats and channels, and chat attachments: a conversation's members page (rename, invite,
remove, leave), public channels (browse, search, subscribe, create), and the image attachments of messages.

Everything is messaging's own API with the person's token (`PATCH /chats/{id}`, `POST /chats/{id}/members`,
`DELETE /chats/{id}/members/{user}`, `POST /chats/{id}/leave`, `GET /chats/channels`, `POST /chats/{id}/subscribe`);
messaging decides who may do what (owner and admins manage, a channel's subscribers only read), and its
refusals become the usual human messages.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Form, Path, Query, Request, Response
from fastapi.responses import RedirectResponse

from quark_web import errors
from quark_web.apiclient import ApiError, ModuleDown
from quark_web.pagekit import Page, PageError, Redirect, WebRoute, page_of

router = APIRouter(route_class=WebRoute, include_in_schema=False)
CHATS = "/api/v1/chats"
MEDIA = "/api/v1/media"
USERS = "/api/v1/users"
MANAGERS = ("owner", "admin")
MEDIA_ID = r"^[A-Za-z0-9_-]{1,64}$"
Short = Annotated[str, Form(max_length=1000)]
# How long an attachment's <img> request waits for media to finish the variants (it polls meanwhile).
ATTACHMENT_WAIT = 15.0


async def user_ids(page: Page, raw: str) -> list[str]:
    """Usernames (comma, semicolon or space separated, '@' optional) -> user ids, looked up in parallel."""
    names = [n for n in (x.strip().lstrip("@") for x in raw.replace(";", ",").replace(" ", ",").split(",")) if n]
    if len(names) > 50 or any(len(n) > 64 for n in names):
        raise PageError(422, errors.FORM_INVALID)

    async def one(name: str) -> str:
        try:
            profile = await page.call("GET", f"{USERS}/{name}")
        except ApiError as exc:
            if exc.status == 404 and not isinstance(exc, ModuleDown):
                raise PageError(404, "We could not find anyone with that username.") from None
            raise
        return str(profile["user_id"])

    return list(dict.fromkeys(await asyncio.gather(*(one(n) for n in dict.fromkeys(names)))))


# -- a conversation's members -----------------------------------------------------------------------


@router.get("/messages/{chat_id}/members")
async def members(request: Request, chat_id: uuid.UUID) -> Response:
    page = page_of(request)
    sess = page.require_user()
    detail: dict[str, Any] = await page.call("GET", f"{CHATS}/{chat_id}")
    role = detail.get("role")
    return page.render("messenger/members.html", chat=detail, chat_id=str(chat_id), me=sess.user_id,
                       manage=role in MANAGERS and detail.get("kind") != "direct", role=role)


@router.post("/messages/{chat_id}/rename")
async def rename(request: Request, chat_id: uuid.UUID, title: Short = "") -> Response:
    page = page_of(request)
    page.require_user()
    if not title.strip():
        raise PageError(422, errors.FORM_INVALID)
    await page.call("PATCH", f"{CHATS}/{chat_id}", json={"title": title.strip()})
    page.notice("chat-renamed")
    raise Redirect(f"/messages/{chat_id}/members")


@router.post("/messages/{chat_id}/invite")
async def invite(request: Request, chat_id: uuid.UUID, usernames: Short = "") -> Response:
    page = page_of(request)
    page.require_user()
    ids = await user_ids(page, usernames)
    if not ids:
        raise PageError(422, errors.FORM_INVALID)
    await page.call("POST", f"{CHATS}/{chat_id}/members", json={"user_ids": ids})
    page.notice("members-added")
    raise Redirect(f"/messages/{chat_id}/members")


@router.post("/messages/{chat_id}/members/{member_id}/remove")
async def remove(request: Request, chat_id: uuid.UUID, member_id: uuid.UUID) -> Response:
    page = page_of(request)
    page.require_user()
    await page.call("DELETE", f"{CHATS}/{chat_id}/members/{member_id}")
    page.notice("member-removed")
    raise Redirect(f"/messages/{chat_id}/members")


@router.post("/messages/{chat_id}/leave")
async def leave(request: Request, chat_id: uuid.UUID) -> Response:
    page = page_of(request)
    page.require_user()
    await page.call("POST", f"{CHATS}/{chat_id}/leave")
    page.notice("chat-left")
    raise Redirect("/messages")


# -- channels ----------------------------------------------------------------------------------------


@router.get("/channels")
async def channels(request: Request, q: Annotated[str | None, Query(max_length=100)] = None,
                   cursor: Annotated[str | None, Query(max_length=200)] = None) -> Response:
    page = page_of(request)
    page.require_user()
    listing = await page.call("GET", f"{CHATS}/channels", params={"q": (q or "").strip() or None, "limit": 20,
                                                                   "cursor": cursor})
    more = None
    if listing.get("next_cursor"):
        more = "/channels?" + "&".join([f"cursor={listing['next_cursor']}", *([f"q={q}"] if q else [])])
    return page.render("messenger/channels.html", channels=listing.get("items", []), q=q or "", more=more)


@router.post("/channels/new")
async def new_channel(request: Request, title: Short = "", members: Short = "") -> Response:
    page = page_of(request)
    page.require_user()
    if not title.strip():
        raise PageError(422, errors.FORM_INVALID)
    ids = await user_ids(page, members)
    chat = await page.call("POST", CHATS, json={"kind": "channel", "title": title.strip(), "member_ids": ids})
    raise Redirect(f"/messages/{chat['id']}")


@router.post("/channels/{chat_id}/subscribe")
async def subscribe(request: Request, chat_id: uuid.UUID) -> Response:
    page = page_of(request)
    page.require_user()
    await page.call("POST", f"{CHATS}/{chat_id}/subscribe")
    raise Redirect(f"/messages/{chat_id}")


# -- attachments -------------------------------------------------------------------------------------


@router.get("/messages/attachment/{media_id}")
async def attachment(request: Request, media_id: Annotated[str, Path(pattern=MEDIA_ID)],
                     size: Annotated[str, Query(pattern=r"^(thumb|medium)$")] = "medium") -> Response:
    """An attachment's image: a redirect to media's variant once it is processed. A message is often shown
    (live) before media has finished, so this waits for the variants on a deadline, polling the media API;
    not visible to this person (or failed, or still not ready) is a 404."""
    page = page_of(request)
    page.require_user()
    deadline = time.monotonic() + ATTACHMENT_WAIT
    delay = 0.2
    while True:
        try:
            m = await page.call("GET", f"{MEDIA}/{media_id}")
        except ApiError as exc:
            if isinstance(exc, ModuleDown) or exc.status != 404:
                raise
            m = {"status": "hidden"}  # not ready media is visible only to its owner: wait as for processing
        variants = m.get("variants") or {}
        chosen = variants.get(size) or variants.get("medium") or variants.get("original")
        if m.get("status") == "ready" and chosen and chosen.get("url"):
            return RedirectResponse(chosen["url"], status_code=303, headers={"Cache-Control": "private, max-age=3600"})
        if m.get("status") == "failed" or time.monotonic() >= deadline:
            raise PageError(404, errors.NOT_FOUND)
        await asyncio.sleep(delay)
        delay = min(delay * 1.5, 1.0)


async def upload_attachment(page: Page, name: str, data: bytes, content_type: str) -> str:
    """One image for a message: to the media API as the person (purpose `message`); returns its id."""
    if len(data) > page.rt.settings.max_upload_bytes:
        raise PageError(413, errors.BY_STATUS[413])
    media = await page.call("POST", MEDIA, params={"purpose": "message"}, timeout=page.rt.settings.upload_timeout,
                            files={"file": (name or "image", data, content_type or "application/octet-stream")})
    return str(media["id"])
