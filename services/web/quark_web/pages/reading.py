"""Reading: the home feed, the public feed, tags, search, a person's blog (`/@username`), a post
(`/@username/slug`) with its threaded comments and reactions, reports, and an Atom feed per blog.

Feeds scroll forever: the last card of a page carries `hx-get` of the next page (the blog's own cursor)
with `hx-trigger="revealed"`; an HTMX request gets only the cards.
"""

from __future__ import annotations

import asyncio
import html
import re
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import urlencode, urlsplit
from xml.etree import ElementTree as ET

from fastapi import APIRouter, Form, Path, Query, Request, Response
from markupsafe import Markup

from quark_web import bff, errors
from quark_web.apiclient import ApiError, ModuleDown
from quark_web.pagekit import Page, PageError, Redirect, WebRoute, page_of, safe_next

router = APIRouter(route_class=WebRoute, include_in_schema=False)
POSTS = "/api/v1/posts"
Username = Annotated[str, Path(max_length=64, pattern=r"^[A-Za-z0-9_.\-]+$")]
Cursor = Annotated[str | None, Query(max_length=4000)]
REACTIONS = {"like": "👍", "love": "❤️", "laugh": "😂", "wow": "😮", "sad": "😢", "angry": "😠", "celebrate": "🎉"}
REACTION_NAMES = {"like": "Like", "love": "Love", "laugh": "Laugh", "wow": "Wow", "sad": "Sad", "angry": "Angry",
                  "celebrate": "Celebrate"}


def safe_snippet(snippet: str) -> Markup:
    """The blog's snippet is escaped text with <mark> around matches; keep exactly that and nothing else."""
    parts = re.split(r"(</?mark>)", snippet)
    out = []
    for part in parts:
        if part in ("<mark>", "</mark>"):
            out.append(part)
        else:
            out.append(html.escape(html.unescape(part)))
    text = "".join(out)
    if text.count("<mark>") != text.count("</mark>"):
        text = text.replace("<mark>", "").replace("</mark>", "")
    return Markup(text)  # noqa: S704 - every piece above was escaped; only <mark> tags are kept


async def _feed(page: Page, source: str, *, arg: str | None = None, cursor: str | None = None,
                base: str, title: str, intro: str | None = None) -> Response:
    """A feed page, or (HTMX, with a cursor) just its next cards."""
    try:
        data = await bff.feed_page(page.rt, page.token, source, arg=arg, cursor=cursor,
                                   limit=page.rt.settings.page_size)
    except ModuleDown:
        if page.htmx:
            raise
        return page.render("reading/feed.html", status=200, title=title, intro=intro, feed=None, base=base,
                           degraded="blog")
    more = None
    if data["next_cursor"]:
        sep = "&" if "?" in base else "?"
        more = base + sep + urlencode({"cursor": data["next_cursor"]})
    if page.htmx and cursor:
        return page.render("reading/cards.html", feed=data, more=more)
    return page.render("reading/feed.html", title=title, intro=intro, feed=data, more=more, base=base,
                       source=source, arg=arg)


@router.get("/")
async def home(request: Request, cursor: Cursor = None) -> Response:
    page = page_of(request)
    if page.user is None:
        return await _feed(page, "public", cursor=cursor, base="/", title="Welcome to Quark",
                           intro="Blogs and conversations. Read what people publish, or sign up to write your own.")
    return await _feed(page, "home", cursor=cursor, base="/", title="Your feed",
                       intro="Posts of the people you follow, and your own.")


@router.get("/explore")
async def explore(request: Request, cursor: Cursor = None) -> Response:
    return await _feed(page_of(request), "public", cursor=cursor, base="/explore", title="Explore",
                       intro="Everything published publicly, newest first.")


@router.get("/tags")
async def tags(request: Request) -> Response:
    page = page_of(request)
    listing = await page.call("GET", f"{POSTS}/tags", params={"limit": 100})
    return page.render("reading/tags.html", tags=listing["items"])


@router.get("/tags/{tag}")
async def tag(request: Request, tag: Annotated[str, Path(max_length=60)], cursor: Cursor = None) -> Response:
    return await _feed(page_of(request), "tag", arg=tag, cursor=cursor, base=f"/tags/{tag}", title=f"#{tag}")


@router.get("/search")
async def search(request: Request, q: Annotated[str, Query(max_length=200)] = "", cursor: Cursor = None) -> Response:
    page = page_of(request)
    q = q.strip()
    if not q:
        return page.render("reading/search.html", q="", hits=None)
    found = await page.call("GET", "/api/v1/search", params={"q": q, "limit": page.rt.settings.page_size,
                                                              "cursor": cursor})
    hits = [{**h, "snippet_html": safe_snippet(h.get("snippet", ""))} for h in found["items"]]
    more = "/search?" + urlencode({"q": q, "cursor": found["next_cursor"]}) if found.get("next_cursor") else None
    if page.htmx and cursor:
        return page.render("reading/hits.html", hits=hits, more=more)
    return page.render("reading/search.html", q=q, hits=hits, more=more)


# -- a person's blog ---------------------------------------------------------------------------


@router.get("/@{username}")
async def blog(request: Request, username: Username, cursor: Cursor = None) -> Response:
    page = page_of(request)
    base = f"/@{username}"
    profile: dict[str, Any] | None = None
    profile_down = False
    try:
        profile = await page.call("GET", f"/api/v1/users/{username}")
    except ModuleDown:
        profile_down = True
    except ApiError as exc:
        if exc.status != 404:
            raise
        raise PageError(404, errors.NOT_FOUND) from None
    try:
        data = await bff.feed_page(page.rt, page.token, "user", arg=username, cursor=cursor,
                                   limit=page.rt.settings.page_size)
    except ModuleDown:
        data = None
    more = base + "?" + urlencode({"cursor": data["next_cursor"]}) if data and data["next_cursor"] else None
    if page.htmx and cursor and data is not None:
        return page.render("reading/cards.html", feed=data, more=more)
    return page.render("reading/blog.html", username=username, profile=profile, profile_down=profile_down,
                       feed=data, more=more, base=base)


def _absolute(page: Page, path: str) -> str:
    base = page.rt.settings.public_url or str(page.request.base_url).rstrip("/")
    return base.rstrip("/") + path


@router.get("/@{username}/feed.atom")
async def atom(request: Request, username: Username) -> Response:
    """The blog as an Atom 1.0 feed (public posts as an anonymous reader sees them)."""
    page = page_of(request)
    listing = await page.rt.api.get(f"{POSTS}/by/{username}", params={"limit": 20})
    profile = await bff.public_profile(page.rt, username)
    name = (profile or {}).get("display_name") or username
    ns = "http://www.w3.org/2005/Atom"
    ET.register_namespace("", ns)
    feed = ET.Element(f"{{{ns}}}feed")
    ET.SubElement(feed, f"{{{ns}}}title").text = f"{name} · Quark"
    ET.SubElement(feed, f"{{{ns}}}id").text = _absolute(page, f"/@{username}")
    ET.SubElement(feed, f"{{{ns}}}link", href=_absolute(page, f"/@{username}"), rel="alternate")
    ET.SubElement(feed, f"{{{ns}}}link", href=_absolute(page, f"/@{username}/feed.atom"), rel="self")
    items = listing.get("items", [])
    updated = max((p.get("published_at") or "" for p in items), default="") or datetime.now(UTC).isoformat()
    ET.SubElement(feed, f"{{{ns}}}updated").text = updated
    author = ET.SubElement(feed, f"{{{ns}}}author")
    ET.SubElement(author, f"{{{ns}}}name").text = name
    for post in items:
        url = _absolute(page, f"/@{username}/{post['slug']}")
        entry = ET.SubElement(feed, f"{{{ns}}}entry")
        ET.SubElement(entry, f"{{{ns}}}title").text = post["title"]
        ET.SubElement(entry, f"{{{ns}}}id").text = f"urn:uuid:{post['id']}"
        ET.SubElement(entry, f"{{{ns}}}link", href=url, rel="alternate")
        ET.SubElement(entry, f"{{{ns}}}published").text = post.get("published_at") or updated
        ET.SubElement(entry, f"{{{ns}}}updated").text = post.get("published_at") or updated
        ET.SubElement(entry, f"{{{ns}}}summary").text = post.get("excerpt") or ""
        for t in post.get("tags", []):
            ET.SubElement(entry, f"{{{ns}}}category", term=t)
    body = ET.tostring(feed, encoding="utf-8", xml_declaration=True)
    return Response(body, media_type="application/atom+xml; charset=utf-8",
                    headers={"Cache-Control": "public, max-age=300"})


# -- a post --------------------------------------------------------------------------------------


async def _post(page: Page, username: str, slug: str) -> dict[str, Any]:
    """The post and its first 100 comments, in one request (the blog's `?comments=`)."""
    try:
        post: dict[str, Any] = await page.call("GET", f"{POSTS}/by/{username}/{slug}", params={"comments": 100})
    except ApiError as exc:
        if exc.status == 404:
            raise PageError(404, errors.NOT_FOUND) from None
        raise
    return post


async def _comments(page: Page, post: dict[str, Any]) -> Any:
    try:
        return await page.call("GET", f"{POSTS}/{post['id']}/comments", params={"limit": 100})
    except ModuleDown:
        return None


@router.get("/@{username}/{slug}")
async def post_page(request: Request, username: Username, slug: Annotated[str, Path(max_length=100)]) -> Response:
    page = page_of(request)
    post = await _post(page, username, slug)
    degraded: list[str] = []
    if "comments" in post:
        comments = post.pop("comments")
        media = await bff.enrich(page.rt, [post], degraded)
    else:  # a blog from before `?comments=` (a fleet mid-upgrade): the comments on their own, in parallel
        comments, media = await asyncio.gather(_comments(page, post), bff.enrich(page.rt, [post], degraded))
    image = next((m["variants"].get("medium") for m in media[0]["media"] if m.get("variants")), None)
    return page.render("reading/post.html", post=post, author=media[0]["author"], media=media[0]["media"],
                       comments=comments, reactions=_reactions(post),
                       canonical=_absolute(page, f"/@{username}/{post['slug']}"),
                       og_image=_absolute(page, image) if image and image.startswith("/") else image)


def _back(page: Page) -> str:
    """Where the form was (the Referer, when it is one of our own pages)."""
    ref = urlsplit(page.request.headers.get("referer") or "")
    if ref.netloc and ref.netloc != page.request.headers.get("host"):
        return "/"
    return safe_next(ref.path + ("?" + ref.query if ref.query else ""))


def _reactions(post: dict[str, Any]) -> dict[str, Any]:
    counts = post.get("reactions") or post.get("counts") or {}
    mine = post.get("my_reactions") or post.get("mine") or []
    return {"post_id": str(post.get("id") or post.get("post_id")), "counts": counts, "mine": mine,
            "kinds": REACTIONS, "names": REACTION_NAMES}


@router.post("/p/{post_id}/react")
async def react(request: Request, post_id: uuid.UUID, kind: Annotated[str, Form(max_length=20)] = "like") -> Response:
    page = page_of(request)
    page.require_user()
    if kind not in REACTIONS:
        raise PageError(422, errors.FORM_INVALID)
    current = await page.call("GET", f"{POSTS}/{post_id}/reactions")
    if kind in current.get("mine", []):
        state = await page.call("DELETE", f"{POSTS}/{post_id}/reactions/{kind}")
    else:
        state = await page.call("POST", f"{POSTS}/{post_id}/reactions", json={"kind": kind})
    if page.htmx:
        return page.render("reading/reactions.html", reactions=_reactions(state))
    raise Redirect(_back(page))


@router.post("/p/{post_id}/comments")
async def comment(request: Request, post_id: uuid.UUID, body: Annotated[str, Form(max_length=20_000)] = "",
                  parent_id: Annotated[str, Form(max_length=40)] = "") -> Response:
    page = page_of(request)
    page.require_user()
    if not body.strip():
        raise PageError(422, errors.FORM_INVALID)
    payload: dict[str, Any] = {"body": body, "format": "markdown"}
    if parent_id:
        try:
            payload["parent_id"] = str(uuid.UUID(parent_id))
        except ValueError:
            raise PageError(422, errors.FORM_INVALID) from None
    await page.call("POST", f"{POSTS}/{post_id}/comments", json=payload)
    if page.htmx:
        comments = await page.call("GET", f"{POSTS}/{post_id}/comments", params={"limit": 100})
        return page.render("reading/comments.html", comments=comments, post={"id": str(post_id)})
    raise Redirect(_back(page))


@router.post("/p/{post_id}/report")
async def report_post(request: Request, post_id: uuid.UUID,
                      reason: Annotated[str, Form(max_length=500)] = "") -> Response:
    return await _report(page_of(request), f"{POSTS}/{post_id}/report", reason)


@router.post("/c/{comment_id}/report")
async def report_comment(request: Request, comment_id: uuid.UUID,
                         reason: Annotated[str, Form(max_length=500)] = "") -> Response:
    return await _report(page_of(request), f"/api/v1/comments/{comment_id}/report", reason)


async def _report(page: Page, path: str, reason: str) -> Response:
    page.require_user()
    if not reason.strip():
        raise PageError(422, errors.FORM_INVALID)
    await page.call("POST", path, json={"reason": reason.strip()})
    if page.htmx:
        _ = page.context()["_"]
        return page.render("partials/flash.html", message=_(errors.FLASHES["reported"]), kind="ok")
    page.notice("reported")
    raise Redirect(_back(page))
