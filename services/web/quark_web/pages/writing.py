"""Writing: the Markdown editor with live preview (the blog's own renderer), image upload with progress
and thumbnail (media API), tags, visibility, schedule, the list of one's posts and drafts; AI drafts:
ask, edit, approve (becomes a blog draft, never published by itself) or reject."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Form, Path, Query, Request, Response, UploadFile
from fastapi.responses import JSONResponse

from quark_web import errors
from quark_web.apiclient import ApiError, ModuleDown
from quark_web.pagekit import Page, PageError, Redirect, WebRoute, page_of

router = APIRouter(route_class=WebRoute, include_in_schema=False)
POSTS = "/api/v1/posts"
MEDIA = "/api/v1/media"
AI = "/api/v1/ai"
Text = Annotated[str, Form(max_length=200_000)]
Short = Annotated[str, Form(max_length=1000)]
VISIBILITIES = ("public", "followers", "private")
MEDIA_ID = r"^[A-Za-z0-9_-]{1,64}$"


def _tags(raw: str) -> list[str]:
    return [t.strip().lstrip("#") for t in raw.replace(";", ",").split(",") if t.strip().lstrip("#")][:10]


def _media_ids(raw: str) -> list[str]:
    import re

    return [m for m in (x.strip() for x in raw.split(",")) if re.fullmatch(MEDIA_ID, m)][:20]


def _schedule(raw: str, tz_offset: str) -> str | None:
    """The form's local date-time (datetime-local) plus the browser's offset in minutes, as UTC ISO."""
    if not raw.strip():
        return None
    try:
        local = datetime.fromisoformat(raw.strip())
        minutes = int(tz_offset or 0)
    except ValueError:
        raise PageError(422, errors.FORM_INVALID) from None
    from datetime import timedelta, timezone

    if not -900 <= minutes <= 900:
        raise PageError(422, errors.FORM_INVALID)
    aware = local.replace(tzinfo=timezone(-timedelta(minutes=minutes))) if local.tzinfo is None else local
    return aware.astimezone(UTC).isoformat()


def _editor(page: Page, post: dict[str, Any] | None, status: int = 200, **extra: Any) -> Response:
    return page.render("writing/editor.html", status=status, post=post or {}, visibilities=VISIBILITIES, **extra)


@router.get("/write")
async def new_post(request: Request) -> Response:
    page = page_of(request)
    page.require_user()
    return _editor(page, None)


@router.post("/write/upload")
async def upload(request: Request, file: UploadFile) -> Response:
    """The editor's image upload (XHR with progress): forwarded to the media API as the person."""
    page = page_of(request)
    if page.user is None:
        return JSONResponse({"message": page.context()["_"](errors.SIGN_IN_NEEDED)}, status_code=401)
    data = await file.read(page.rt.settings.max_upload_bytes + 1)
    _ = page.context()["_"]
    if len(data) > page.rt.settings.max_upload_bytes:
        return JSONResponse({"message": _(errors.BY_STATUS[413])}, status_code=413)
    try:
        media = await page.call("POST", MEDIA, params={"purpose": "post"}, timeout=page.rt.settings.upload_timeout,
                                files={"file": (file.filename or "image", data,
                                                file.content_type or "application/octet-stream")})
    except ApiError as exc:
        message = errors.module_down(exc.module) if isinstance(exc, ModuleDown) else errors.human(exc)
        return JSONResponse({"message": _(message)}, status_code=exc.status if exc.status < 500 else 502)
    return JSONResponse({"id": media["id"], "status": media["status"]}, status_code=201)


@router.get("/write/{post_id}")
async def edit_post(request: Request, post_id: uuid.UUID) -> Response:
    page = page_of(request)
    page.require_user()
    post = await page.call("GET", f"{POSTS}/{post_id}")
    if post.get("body_source") is None:
        raise PageError(403, errors.BY_STATUS[403])
    return _editor(page, post)


async def _save(page: Page, post_id: str | None, form: dict[str, Any]) -> Response:
    action = form["action"]
    body: dict[str, Any] = {"title": form["title"].strip(), "body": form["body"], "format": "markdown",
                            "tags": _tags(form["tags"]), "media_ids": _media_ids(form["media_ids"]),
                            "visibility": form["visibility"] if form["visibility"] in VISIBILITIES else "public"}
    at = _schedule(form["scheduled_at"], form["tz_offset"]) if action == "schedule" else None
    if action == "schedule" and at is None:
        return _editor(page, {**body, "id": post_id, "body_source": form["body"]}, status=422,
                       error=errors.FORM_INVALID, field_errors={"scheduled_at": "required"})
    try:
        if post_id is None:
            saved = await page.call("POST", POSTS, json={**body, "publish": action == "publish",
                                                         **({"scheduled_at": at} if at else {})})
        else:
            saved = await page.call("PATCH", f"{POSTS}/{post_id}", json=body)
            if action == "publish" and saved["status"] != "published":
                saved = await page.call("POST", f"{POSTS}/{post_id}/publish")
            elif action == "schedule":
                saved = await page.call("POST", f"{POSTS}/{post_id}/schedule", json={"at": at})
            elif action == "unpublish" and saved["status"] != "draft":
                saved = await page.call("POST", f"{POSTS}/{post_id}/unpublish")
    except ModuleDown:
        raise
    except ApiError as exc:
        return _editor(page, {**body, "id": post_id, "body_source": form["body"],
                              "tags": body["tags"], "media_ids": body["media_ids"]},
                       status=exc.status if exc.status < 500 else 502, error=errors.human(exc),
                       field_errors=errors.field_errors(exc))
    page.notice("post-saved")
    if saved["status"] == "published":
        raise Redirect(f"/@{saved['author']['username']}/{saved['slug']}")
    raise Redirect("/drafts")


def _form(title: str, body: str, tags: str, visibility: str, media_ids: str, scheduled_at: str, tz_offset: str,
          action: str) -> dict[str, Any]:
    return {"title": title, "body": body, "tags": tags, "visibility": visibility, "media_ids": media_ids,
            "scheduled_at": scheduled_at, "tz_offset": tz_offset, "action": action}


@router.post("/write")
async def create(request: Request, title: Short = "", body: Text = "", tags: Short = "", visibility: Short = "public",
                 media_ids: Short = "", scheduled_at: Short = "", tz_offset: Short = "0",
                 action: Short = "draft") -> Response:
    page = page_of(request)
    page.require_user()
    return await _save(page, None, _form(title, body, tags, visibility, media_ids, scheduled_at, tz_offset, action))


@router.post("/write/{post_id}")
async def update(request: Request, post_id: uuid.UUID, title: Short = "", body: Text = "", tags: Short = "",
                 visibility: Short = "public", media_ids: Short = "", scheduled_at: Short = "",
                 tz_offset: Short = "0", action: Short = "draft") -> Response:
    page = page_of(request)
    page.require_user()
    return await _save(page, str(post_id),
                       _form(title, body, tags, visibility, media_ids, scheduled_at, tz_offset, action))


@router.post("/write/{post_id}/delete")
async def delete(request: Request, post_id: uuid.UUID) -> Response:
    page = page_of(request)
    page.require_user()
    await page.call("DELETE", f"{POSTS}/{post_id}")
    page.notice("post-deleted")
    raise Redirect("/drafts")


@router.post("/write-preview")
async def preview(request: Request, body: Text = "") -> Response:
    """HTMX: the editor's live preview, rendered by the blog (its Markdown + sanitiser)."""
    page = page_of(request)
    page.require_user()
    try:
        rendered = await page.call("POST", f"{POSTS}/preview", json={"body": body, "format": "markdown"})
    except ModuleDown:
        return page.render("writing/preview.html", html=None, down=True)
    return page.render("writing/preview.html", html=rendered["body_html"], down=False)


@router.get("/write/media/{media_id}")
async def media_status(request: Request, media_id: Annotated[str, Path(pattern=MEDIA_ID)]) -> Response:
    """The upload's processing state, polled by the editor until the thumbnail exists."""
    page = page_of(request)
    page.require_user()
    m = await page.call("GET", f"{MEDIA}/{media_id}")
    variants = {n: v["url"] for n, v in (m.get("variants") or {}).items()}
    return JSONResponse({"id": m["id"], "status": m["status"], "thumb": variants.get("thumb"),
                         "medium": variants.get("medium") or variants.get("original")})


@router.get("/drafts")
async def drafts(request: Request, status: Annotated[str | None, Query(max_length=16)] = None,
                 cursor: Annotated[str | None, Query(max_length=4000)] = None) -> Response:
    page = page_of(request)
    page.require_user()
    st = status if status in ("draft", "scheduled", "published") else None
    listing = await page.call("GET", f"{POSTS}/mine", params={"limit": 50, "status": st, "cursor": cursor})
    return page.render("writing/drafts.html", posts=listing["items"], filter_status=st,
                       next_cursor=listing["next_cursor"])


# -- AI drafts ------------------------------------------------------------------------------------


@router.get("/ai/drafts")
async def ai_drafts(request: Request) -> Response:
    page = page_of(request)
    page.require_user()
    listing = await page.call("GET", f"{AI}/drafts", params={"limit": 50})
    return page.render("writing/ai_drafts.html", drafts=listing["items"], values={})


@router.post("/ai/drafts")
async def ask_ai(request: Request, topic: Short = "", tone: Short = "neutral", length: Short = "medium") -> Response:
    page = page_of(request)
    page.require_user()
    try:
        draft = await page.call("POST", f"{AI}/drafts", json={"topic": topic.strip(), "tone": tone, "length": length},
                                headers={"Idempotency-Key": uuid.uuid4().hex})
    except ApiError as exc:
        if isinstance(exc, ModuleDown):
            raise
        listing = await page.call("GET", f"{AI}/drafts", params={"limit": 50})
        return page.render("writing/ai_drafts.html", status=exc.status, drafts=listing["items"],
                           error=errors.human(exc), values={"topic": topic})
    raise Redirect(f"/ai/drafts/{draft['id']}")


@router.get("/ai/drafts/{draft_id}")
async def ai_draft(request: Request, draft_id: uuid.UUID) -> Response:
    page = page_of(request)
    page.require_user()
    draft = await page.call("GET", f"{AI}/drafts/{draft_id}")
    return page.render("writing/ai_draft.html", draft=draft)


@router.post("/ai/drafts/{draft_id}")
async def ai_draft_action(request: Request, draft_id: uuid.UUID, title: Short = "", body: Text = "",
                          tags: Short = "", action: Short = "save") -> Response:
    page = page_of(request)
    page.require_user()
    edits: dict[str, Any] = {}
    if title.strip():
        edits["title"] = title.strip()
    if body.strip():
        edits["body"] = body
    edits["tags"] = _tags(tags)
    try:
        if action == "reject":
            await page.call("POST", f"{AI}/drafts/{draft_id}/reject")
            page.notice("draft-rejected")
            raise Redirect("/ai/drafts")
        if action == "approve":
            done = await page.call("POST", f"{AI}/drafts/{draft_id}/approve", json=edits)
            page.notice("draft-approved")
            post_id = done.get("blog_post_id")
            raise Redirect(f"/write/{post_id}" if post_id else "/drafts")
        draft = await page.call("PATCH", f"{AI}/drafts/{draft_id}", json=edits)
    except ApiError as exc:
        if isinstance(exc, ModuleDown):
            raise
        draft = await page.call("GET", f"{AI}/drafts/{draft_id}")
        return page.render("writing/ai_draft.html", status=exc.status, draft=draft, error=errors.human(exc))
    page.notice("post-saved")
    raise Redirect(f"/ai/drafts/{draft['id']}")
