"""Social: a person's profile with follow / unfollow / block / mute, followers and following lists (the user
API's cursors), one's own profile settings (display name, bio, links, privacy, avatar through the media
API) and the lists one manages: follow requests (accept / decline), blocked and muted accounts.

Paths live under `/people/...` and `/settings/...`, so they never shadow a blog post at `/@name/<slug>`.
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Form, Path, Query, Request, Response, UploadFile

from quark_web import errors
from quark_web.apiclient import ApiError, ModuleDown
from quark_web.pagekit import Page, PageError, Redirect, WebRoute, page_of

router = APIRouter(route_class=WebRoute, include_in_schema=False)
USERS = "/api/v1/users"
MEDIA = "/api/v1/media"
Username = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")]
CursorQ = Annotated[str | None, Query(max_length=200)]
LimitQ = Annotated[int, Query(ge=1, le=50)]
Short = Annotated[str, Form(max_length=1000)]
PAGE = 20

# Relationship actions: the form's action -> (HTTP method, user API path suffix).
ACTIONS: dict[str, tuple[str, str]] = {
    "follow": ("POST", "follow"), "unfollow": ("DELETE", "follow"),
    "block": ("POST", "block"), "unblock": ("DELETE", "block"),
    "mute": ("POST", "mute"), "unmute": ("DELETE", "mute"),
}
# Lists of people: the page's kind -> (title, user API path).
OWN_LISTS: dict[str, tuple[str, str]] = {
    "requests": ("Follow requests", f"{USERS}/me/follow-requests"),
    "blocked": ("Blocked accounts", f"{USERS}/me/blocks"),
    "muted": ("Muted accounts", f"{USERS}/me/mutes"),
}
EDGE_TITLES = {"followers": "Followers", "following": "Following"}


async def _profile(page: Page, username: str) -> dict[str, Any]:
    try:
        profile: dict[str, Any] = await page.call("GET", f"{USERS}/{username}")
    except ApiError as exc:
        if exc.status == 404 and not isinstance(exc, ModuleDown):
            raise PageError(404, errors.NOT_FOUND) from None
        raise
    return profile


@router.get("/people/{username}")
async def profile_page(request: Request, username: Username) -> Response:
    page = page_of(request)
    profile = await _profile(page, username)
    return page.render("social/profile.html", profile=profile, rel=profile.get("relationship") or {},
                       own=page.user is not None and page.user.username.lower() == username.lower())


@router.post("/people/{username}/{action}")
async def relationship(request: Request, username: Username,
                       action: Annotated[str, Path(max_length=16)]) -> Response:
    """Follow, unfollow, block, unblock, mute, unmute; HTMX gets the profile's action bar back."""
    page = page_of(request)
    page.require_user()
    if action not in ACTIONS:
        raise PageError(404, errors.NOT_FOUND)
    method, suffix = ACTIONS[action]
    await page.call(method, f"{USERS}/{username}/{suffix}")
    if page.htmx:
        profile = await _profile(page, username)
        return page.render("social/actions.html", profile=profile, rel=profile.get("relationship") or {}, own=False)
    raise Redirect(f"/people/{username}")


@router.get("/people/{username}/{kind}")
async def edges(request: Request, username: Username, kind: Annotated[str, Path(max_length=16)],
                cursor: CursorQ = None, limit: LimitQ = PAGE) -> Response:
    """Followers or following, newest first, paged with the user API's cursor."""
    page = page_of(request)
    if kind not in EDGE_TITLES:
        raise PageError(404, errors.NOT_FOUND)
    listing = await page.call("GET", f"{USERS}/{username}/{kind}", params={"limit": limit, "cursor": cursor})
    return _people(page, listing, title=EDGE_TITLES[kind], base=f"/people/{username}/{kind}", kind=kind,
                   username=username, limit=limit)


def _people(page: Page, listing: dict[str, Any], *, title: str, base: str, kind: str, username: str = "",
            limit: int = PAGE) -> Response:
    query = urlencode({"cursor": listing.get("next_cursor") or "", **({"limit": limit} if limit != PAGE else {})})
    more = f"{base}?{query}" if listing.get("next_cursor") else None
    template = "social/people_items.html" if page.htmx and page.request.url.query else "social/people.html"
    return page.render(template, listing=listing, title=title, more=more, kind=kind, username=username)


# -- one's own lists ------------------------------------------------------------------------------


def _own_list(kind: str):  # type: ignore[no-untyped-def]
    title, path = OWN_LISTS[kind]

    async def listing_page(request: Request, cursor: CursorQ = None, limit: LimitQ = PAGE) -> Response:
        page = page_of(request)
        page.require_user()
        listing = await page.call("GET", path, params={"limit": limit, "cursor": cursor})
        return _people(page, listing, title=title, base=f"/settings/{kind}", kind=kind, limit=limit)

    return listing_page


for _kind in OWN_LISTS:
    router.add_api_route(f"/settings/{_kind}", _own_list(_kind), methods=["GET"], name=f"own-{_kind}")


@router.post("/settings/requests/{username}/{decision}")
async def decide(request: Request, username: Username, decision: Annotated[str, Path(max_length=8)]) -> Response:
    """Accept (the user API's approve) or decline (reject) a follow request."""
    page = page_of(request)
    page.require_user()
    verbs = {"accept": "approve", "decline": "reject"}
    if decision not in verbs:
        raise PageError(404, errors.NOT_FOUND)
    await page.call("POST", f"{USERS}/me/follow-requests/{username}/{verbs[decision]}")
    page.notice("request-accepted" if decision == "accept" else "request-declined")
    raise Redirect("/settings/requests")


# -- profile settings -----------------------------------------------------------------------------


def _links(raw: str) -> list[str]:
    return [line.strip() for line in raw.splitlines() if line.strip()]


@router.get("/settings/profile")
async def settings_page(request: Request) -> Response:
    page = page_of(request)
    page.require_user()
    me = await page.call("GET", f"{USERS}/me")
    return page.render("social/settings.html", me=me, form=None)


@router.post("/settings/profile")
async def save_settings(request: Request, display_name: Short = "",
                        bio: Annotated[str, Form(max_length=20_000)] = "",
                        links: Annotated[str, Form(max_length=20_000)] = "", privacy: Short = "public") -> Response:
    page = page_of(request)
    page.require_user()
    changes = {"display_name": display_name.strip() or None, "bio": bio.strip(), "links": _links(links),
               "privacy": privacy if privacy in ("public", "followers") else "public"}
    try:
        await page.call("PATCH", f"{USERS}/me", json=changes)
    except ModuleDown:
        raise
    except ApiError as exc:
        me = await page.call("GET", f"{USERS}/me")
        form = {**changes, "links": links}
        return page.render("social/settings.html", status=exc.status if exc.status < 500 else 502, me=me, form=form,
                           error=errors.human(exc), field_errors=errors.field_errors(exc))
    page.notice("profile-saved")
    raise Redirect("/settings/profile")


@router.post("/settings/avatar")
async def upload_avatar(request: Request, file: UploadFile) -> Response:
    """The file goes to the media API (purpose avatar) as the person, then becomes the profile's avatar
    choice; the user module shows it once media has processed the variants."""
    page = page_of(request)
    page.require_user()
    data = await file.read(page.rt.settings.max_upload_bytes + 1)
    if not data:
        raise PageError(422, errors.FORM_INVALID)
    if len(data) > page.rt.settings.max_upload_bytes:
        raise PageError(413, errors.BY_STATUS[413])
    media = await page.call("POST", MEDIA, params={"purpose": "avatar"},
                            files={"file": (file.filename or "avatar", data,
                                            file.content_type or "application/octet-stream")})
    await page.call("PATCH", f"{USERS}/me", json={"avatar_media_id": media["id"]})
    page.notice("avatar-pending")
    raise Redirect("/settings/profile")


@router.post("/settings/avatar/remove")
async def remove_avatar(request: Request) -> Response:
    page = page_of(request)
    page.require_user()
    await page.call("PATCH", f"{USERS}/me", json={"avatar_media_id": None})
    page.notice("avatar-removed")
    raise Redirect("/settings/profile")
