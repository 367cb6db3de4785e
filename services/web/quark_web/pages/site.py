"""Site-wide pages: static files, the language and theme switches, placeholders for areas still to
come (messenger, notifications, profile settings) and the 404 page for every unclaimed path."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from quark_sdk.errors import problem_response
from quark_web import errors
from quark_web.i18n import LANGUAGES
from quark_web.pagekit import LANG_COOKIE, THEME_COOKIE, THEMES, Redirect, WebRoute, page_of, safe_next
from quark_web.runtime import runtime

router = APIRouter(route_class=WebRoute, include_in_schema=False)
fallback = APIRouter(route_class=WebRoute, include_in_schema=False)

YEAR = 365 * 86400


@router.get("/static/{name}")
async def static(name: str, request: Request, v: str | None = None) -> Response:
    asset = runtime(request).assets.files.get(name)
    if asset is None:
        return page_of(request).error_page(404, errors.NOT_FOUND)
    immutable = v == asset.version
    return Response(asset.body, media_type=asset.content_type, headers={
        "Cache-Control": f"public, max-age={YEAR}, immutable" if immutable else "public, max-age=60",
        "ETag": f'"{asset.version}"'})


@router.get("/lang")
async def switch_language(request: Request, to: Annotated[str, Query(max_length=8)] = "en",
                          next: Annotated[str | None, Query(max_length=2000)] = None) -> Response:
    page = page_of(request)
    if to in LANGUAGES:
        page.set_cookie(LANG_COOKIE, to, max_age=YEAR)
    raise Redirect(safe_next(next))


@router.get("/theme")
async def switch_theme(request: Request, to: Annotated[str, Query(max_length=8)] = "",
                       next: Annotated[str | None, Query(max_length=2000)] = None) -> Response:
    page = page_of(request)
    page.set_cookie(THEME_COOKIE, to if to in THEMES else None, max_age=YEAR)
    raise Redirect(safe_next(next))


@fallback.api_route("/{path:path}", methods=["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"])
async def not_found(path: str, request: Request) -> Response:
    if request.url.path.startswith("/api/"):
        # An API path no docked module serves (the gateway fell through to us): the gateway's own answer.
        return problem_response(404, detail=f"no module serves {request.url.path}")
    return page_of(request).error_page(404, errors.NOT_FOUND)
