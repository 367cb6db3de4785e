"""Messenger: the chat list with unread counts, direct and group chats, history paged with messaging's
`before` cursors, sending (an HTMX form; a plain POST without JavaScript), edits and deletes of one's own
messages, the socket ticket (socket.py), the notifications page and the unread badges of the navigation.

Live frames (new messages, typing, read receipts, edits, deletes, notifications) reach the page through
the web module's socket proxy and `static/live.js`; everything here works without them too.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Form, Path, Query, Request, Response, UploadFile
from fastapi.responses import JSONResponse

from quark_web import errors
from quark_web.apiclient import ApiError, ModuleDown
from quark_web.pagekit import Page, PageError, Redirect, WebRoute, page_of
from quark_web.pages import chatadmin
from quark_web.socket import SOCKET_PATH, SUBPROTOCOL, TICKET_TTL, Tickets

router = APIRouter(route_class=WebRoute, include_in_schema=False)
CHATS = "/api/v1/chats"
MESSAGES = "/api/v1/messages"
NOTES = "/api/v1/notifications"
USERS = "/api/v1/users"
POSTS = "/api/v1/posts"
HISTORY = 30
PAGE = 20
Short = Annotated[str, Form(max_length=1000)]
Seq = Annotated[int | None, Query(ge=0, le=2**63 - 1)]
MessageId = Annotated[int, Path(ge=1, le=2**63 - 1)]

# Notification kinds -> the sentence shown (catalogue keys; {name} is filled in).
NOTE_TEXT = {
    "follow": "{name} started following you",
    "comment": "{name} commented on your post",
    "reply": "{name} replied to your comment",
    "mention": "{name} mentioned you",
    "reaction": "Your post got new reactions",
    "message": "New message from {name}",
}


# -- the socket ticket ----------------------------------------------------------------------------


@router.post("/messages/ticket")
async def ticket(request: Request) -> Response:
    """A one-time ticket for `/messages/socket` (JSON), bound to this browser session; CSRF-checked."""
    page = page_of(request)
    if page.sid is None or page.session is None:
        return JSONResponse({"message": "sign in"}, status_code=401)
    value = await Tickets(page.rt).issue(page.sid)
    return JSONResponse({"ticket": value, "url": SOCKET_PATH, "protocol": SUBPROTOCOL, "expires_in": TICKET_TTL},
                        headers={"Cache-Control": "no-store"})


# -- helpers --------------------------------------------------------------------------------------


async def _user_id(page: Page, username: str) -> str:
    name = username.strip().lstrip("@")
    if not name or len(name) > 64:
        raise PageError(422, errors.FORM_INVALID)
    try:
        profile = await page.call("GET", f"{USERS}/{name}")
    except ApiError as exc:
        if exc.status == 404 and not isinstance(exc, ModuleDown):
            raise PageError(404, "We could not find anyone with that username.") from None
        raise
    return str(profile["user_id"])


def _title(chat: dict[str, Any], members: dict[str, str], me: str) -> str:
    if chat.get("title"):
        return str(chat["title"])
    others = [name for uid, name in members.items() if uid != me]
    return ", ".join("@" + n for n in others) or "@?"


async def _members(page: Page, chat_id: str) -> dict[str, str]:
    detail = await page.call("GET", f"{CHATS}/{chat_id}")
    return {str(m["user_id"]): m.get("username") or "" for m in detail.get("members", [])}


# -- the chat list --------------------------------------------------------------------------------


@router.get("/messages")
async def chats(request: Request, cursor: Annotated[str | None, Query(max_length=200)] = None) -> Response:
    page = page_of(request)
    sess = page.require_user()
    listing = await page.call("GET", CHATS, params={"limit": PAGE, "cursor": cursor})
    items = listing.get("items", [])
    # Direct chats have no title: their name is the other person's (the chat's members, in parallel).
    untitled = [c for c in items if not c.get("title")]
    details = await asyncio.gather(*(_members(page, str(c["id"])) for c in untitled), return_exceptions=True)
    names = {str(c["id"]): d for c, d in zip(untitled, details, strict=True) if isinstance(d, dict)}
    for chat in items:
        chat["name"] = _title(chat, names.get(str(chat["id"]), {}), sess.user_id)
    more = f"/messages?cursor={listing['next_cursor']}" if listing.get("next_cursor") else None
    return page.render("messenger/chats.html", chats=items, more=more)


@router.post("/messages/new")
async def new_chat(request: Request, username: Short = "", title: Short = "", members: Short = "") -> Response:
    """A direct chat with `username` (the existing one if any), or a group `title` with `members`."""
    page = page_of(request)
    page.require_user()
    if title.strip():
        names = [n for n in (x.strip().lstrip("@") for x in members.replace(";", ",").split(",")) if n][:50]
        ids = await asyncio.gather(*(_user_id(page, n) for n in names))
        chat = await page.call("POST", CHATS, json={"kind": "group", "title": title.strip(), "member_ids": ids})
    else:
        chat = await page.call("POST", f"{CHATS}/direct", json={"user_id": await _user_id(page, username)})
    raise Redirect(f"/messages/{chat['id']}")


# -- a chat ---------------------------------------------------------------------------------------


@router.get("/messages/{chat_id}")
async def chat(request: Request, chat_id: uuid.UUID, before: Seq = None) -> Response:
    page = page_of(request)
    sess = page.require_user()
    # The chat and its history's page in one request (messaging's `?messages=`).
    detail = await page.call("GET", f"{CHATS}/{chat_id}", params={"messages": HISTORY, "before": before})
    history = detail.get("messages")
    if history is None:  # a messaging from before `?messages=` (a fleet mid-upgrade): the history on its own
        history = await page.call("GET", f"{CHATS}/{chat_id}/messages", params={"limit": HISTORY, "before": before})
    members = {str(m["user_id"]): m.get("username") or "" for m in detail.get("members", [])}
    items = history.get("items", [])
    if items and before is None and detail.get("role") and items[-1]["seq"] > detail.get("last_read_seq", 0):
        with contextlib.suppress(ApiError):  # opening the chat reads it; best effort: the page still shows
            await page.call("POST", f"{CHATS}/{chat_id}/read", json={"seq": items[-1]["seq"]})
    read_by_others = max((m.get("last_read_seq", 0) for m in detail.get("members", [])
                          if str(m["user_id"]) != sess.user_id), default=0)
    return page.render("messenger/chat.html", chat=detail, chat_id=str(chat_id), title=_title(detail, members,
                       sess.user_id), members=members, messages=items, older=history.get("older"),
                       read_seq=read_by_others, me=sess.user_id)


@router.get("/messages/{chat_id}/older")
async def older(request: Request, chat_id: uuid.UUID, before: Seq = None) -> Response:
    """The page before `before` (HTMX: only the messages and the next 'older' button)."""
    page = page_of(request)
    sess = page.require_user()
    if not page.htmx:
        raise Redirect(f"/messages/{chat_id}" + (f"?before={before}" if before is not None else ""))
    # The chat and its history's page in one request (messaging's `?messages=`).
    detail = await page.call("GET", f"{CHATS}/{chat_id}", params={"messages": HISTORY, "before": before})
    history = detail.get("messages")
    if history is None:  # a messaging from before `?messages=` (a fleet mid-upgrade): the history on its own
        history = await page.call("GET", f"{CHATS}/{chat_id}/messages", params={"limit": HISTORY, "before": before})
    members = {str(m["user_id"]): m.get("username") or "" for m in detail.get("members", [])}
    return page.render("messenger/older.html", chat_id=str(chat_id), members=members, me=sess.user_id,
                       messages=history.get("items", []), older=history.get("older"), read_seq=0)


@router.post("/messages/{chat_id}/send")
async def send(request: Request, chat_id: uuid.UUID, body: Annotated[str, Form(max_length=20_000)] = "",
               reply_to: Annotated[str, Form(max_length=20)] = "", file: UploadFile | None = None) -> Response:
    page = page_of(request)
    sess = page.require_user()
    data = await file.read(page.rt.settings.max_upload_bytes + 1) if file is not None else b""
    if not body.strip() and not data:
        raise PageError(422, "Write a message first.")
    payload: dict[str, Any] = {"body": body, "client_msg_id": uuid.uuid4().hex}
    if data and file is not None:  # an image: to media first, then the message carries its id
        payload["attachments"] = [await chatadmin.upload_attachment(page, file.filename or "image", data,
                                                                    file.content_type or "")]
    if reply_to.isdigit() and int(reply_to) > 0:
        payload["reply_to"] = int(reply_to)
    message = await page.call("POST", f"{CHATS}/{chat_id}/messages", json=payload)
    for media_id in payload.get("attachments", []):
        with contextlib.suppress(ApiError):  # used now: media's orphan sweep keeps it (best effort)
            await page.call("POST", f"/api/v1/media/{media_id}/attach")
    if not page.htmx:
        raise Redirect(f"/messages/{chat_id}")
    resp = page.render("messenger/one.html", m=message, members={sess.user_id: sess.username}, me=sess.user_id,
                       chat_id=str(chat_id), read_seq=0)
    resp.headers["X-Message-Id"] = str(message["id"])
    return resp


@router.post("/messages/{chat_id}/m/{message_id}/edit")
async def edit(request: Request, chat_id: uuid.UUID, message_id: MessageId,
               body: Annotated[str, Form(max_length=20_000)] = "") -> Response:
    page = page_of(request)
    sess = page.require_user()
    if not body.strip():
        raise PageError(422, "Write a message first.")
    message = await page.call("PATCH", f"{MESSAGES}/{message_id}", json={"body": body})
    if not page.htmx:
        raise Redirect(f"/messages/{chat_id}")
    return page.render("messenger/one.html", m=message, members={sess.user_id: sess.username}, me=sess.user_id,
                       chat_id=str(chat_id), read_seq=0)


@router.post("/messages/{chat_id}/m/{message_id}/delete")
async def delete(request: Request, chat_id: uuid.UUID, message_id: MessageId) -> Response:
    page = page_of(request)
    sess = page.require_user()
    await page.call("DELETE", f"{MESSAGES}/{message_id}")
    if not page.htmx:
        raise Redirect(f"/messages/{chat_id}")
    message = await page.call("GET", f"{MESSAGES}/{message_id}")
    return page.render("messenger/one.html", m=message, members={sess.user_id: sess.username}, me=sess.user_id,
                       chat_id=str(chat_id), read_seq=0)


# -- notifications and badges ---------------------------------------------------------------------


def _note(n: dict[str, Any]) -> dict[str, Any]:
    data = n.get("data") or {}
    name = data.get("follower_username") or data.get("author_username") or ""
    return {**n, "text": NOTE_TEXT.get(n["kind"], "Something new"), "name": "@" + name if name else "",
            "excerpt": data.get("excerpt") or ""}


@router.get("/notifications")
async def notifications(request: Request, cursor: Annotated[str | None, Query(max_length=200)] = None) -> Response:
    page = page_of(request)
    page.require_user()
    listing = await page.call("GET", NOTES, params={"limit": PAGE, "cursor": cursor})
    more = f"/notifications?cursor={listing['next_cursor']}" if listing.get("next_cursor") else None
    return page.render("messenger/notifications.html", notes=[_note(n) for n in listing.get("items", [])],
                       more=more, texts=NOTE_TEXT)


@router.post("/notifications/read-all")
async def read_all(request: Request) -> Response:
    page = page_of(request)
    page.require_user()
    await page.call("POST", f"{NOTES}/read-all")
    page.notice("notifications-read")
    raise Redirect("/notifications")


@router.post("/notifications/{note_id}/open")
async def open_note(request: Request, note_id: Annotated[int, Path(ge=1, le=2**63 - 1)]) -> Response:
    """Marks the notification read and goes to what it is about."""
    page = page_of(request)
    page.require_user()
    note = await page.call("POST", f"{NOTES}/{note_id}/read")
    data = note.get("data") or {}
    if note["kind"] == "message" and data.get("conversation_id"):
        raise Redirect(f"/messages/{data['conversation_id']}")
    if note["kind"] == "follow" and data.get("follower_username"):
        raise Redirect(f"/people/{data['follower_username']}")
    if data.get("post_id"):
        try:
            post = await page.call("GET", f"{POSTS}/{data['post_id']}")
            raise Redirect(f"/@{post['author']['username']}/{post['slug']}")
        except ApiError:
            pass
    raise Redirect("/notifications")


@router.get("/badges")
async def badges(request: Request) -> Response:
    """The navigation's unread counts (HTMX polling; the live socket updates them between polls)."""
    page = page_of(request)
    if page.user is None:
        return Response(status_code=204)
    counts = await asyncio.gather(page.call("GET", f"{MESSAGES}/unread"), page.call("GET", f"{NOTES}/unread-count"),
                                  return_exceptions=True)
    messages = counts[0].get("total", 0) if isinstance(counts[0], dict) else None
    notes = counts[1].get("unread", 0) if isinstance(counts[1], dict) else None
    return page.render("messenger/badges.html", messages=messages, notes=notes)
