"""The backend-for-frontend: what a page needs from several modules, in one answer.

`GET /api/v1/web/me`   account (auth) + profile (user) + unread counts (messaging), fetched in parallel.
`GET /api/v1/web/feed` a page of posts (home, public, a tag or an author) with each author's profile and
                       each post's images resolved to their variant URLs.

Both take the person's browser session (cookie) or a bearer token (other clients). A module that does
not answer leaves its part `null` and is named in `degraded`; the rest of the answer still comes.
Only what is the same for every viewer is cached, briefly, in Valkey: public profiles as an anonymous
visitor sees them and the variants of ready media.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable
from functools import partial
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, Field

from quark_sdk.errors import InvalidInput, QuarkError, Unauthenticated
from quark_web.apiclient import ApiError, ModuleDown
from quark_web.pagekit import security_headers
from quark_web.runtime import WebRuntime, runtime

PREFIX = "/api/v1/web"
router = APIRouter(prefix=PREFIX, tags=["web"])


# --------------------------------------------------------------------------- shapes


class AuthorProfile(BaseModel):
    username: str
    display_name: str | None = None
    avatar: dict[str, str] | None = Field(default=None, description="variant name -> URL")


class MediaRef(BaseModel):
    id: str
    status: str | None = None
    width: int | None = None
    height: int | None = None
    variants: dict[str, str] = Field(default_factory=dict, description="variant name -> URL")


class FeedItem(BaseModel):
    post: dict[str, Any] = Field(description="the blog's PostSummary, unchanged")
    author: AuthorProfile
    media: list[MediaRef]


class FeedOut(BaseModel):
    source: str
    items: list[FeedItem]
    next_cursor: str | None
    degraded: list[str] = Field(default_factory=list, description="modules that did not answer")


class MeOut(BaseModel):
    account: dict[str, Any] | None = Field(description="auth's UserOut")
    profile: dict[str, Any] | None = Field(description="user's MeOut")
    unread: dict[str, int] | None = Field(description="{messages, notifications}")
    degraded: list[str] = Field(default_factory=list)


# --------------------------------------------------------------------------- fan-out helpers


async def _soft(call: Awaitable[Any], degraded: list[str], *, optional: bool = False) -> Any:
    """The call's answer, or None when its module is down (named in `degraded`); with `optional`, also
    None when it refuses (a part of the answer the person may not have, e.g. no messaging yet)."""
    try:
        return await call
    except ModuleDown as exc:
        if exc.module not in degraded:
            degraded.append(exc.module)
        return None
    except ApiError:
        if optional:
            return None
        raise


def _profile_key(rt: WebRuntime, username: str) -> str:
    return rt.ctx.key("cache", f"profile:{username}")


def _media_key(rt: WebRuntime, media_id: str) -> str:
    return rt.ctx.key("cache", f"media:{media_id}")


async def _remember(rt: WebRuntime, key: str, value: Any) -> None:
    await rt.redis.set(key, json.dumps(value), px=int(rt.settings.cache_ttl * 1000))


async def _fetch_profile(rt: WebRuntime, username: str) -> dict[str, Any] | None:
    try:
        got: dict[str, Any] = await rt.api.get(f"/api/v1/users/{username}")
    except ApiError as exc:
        if isinstance(exc, ModuleDown):
            raise
        return None
    if rt.settings.cache_ttl > 0:
        await _remember(rt, _profile_key(rt, username), got)
    return got


async def _from_cache(rt: WebRuntime, keys: list[str]) -> list[Any]:
    """The cached values of `keys` in one Valkey read (None for a miss, or all None with the cache off)."""
    if not keys or rt.settings.cache_ttl <= 0:
        return [None] * len(keys)
    return [json.loads(raw) if raw is not None else None for raw in await rt.redis.mget(keys)]


async def public_profile(rt: WebRuntime, username: str) -> dict[str, Any] | None:
    """A profile as an anonymous visitor sees it (the same for everyone, so cacheable); None if unknown."""
    (cached,) = await _from_cache(rt, [_profile_key(rt, username)])
    return dict(cached) if cached is not None else await _fetch_profile(rt, username)


async def _fetch_media(rt: WebRuntime, media_id: str) -> dict[str, Any]:
    try:
        m = await rt.api.get(f"/api/v1/media/{media_id}")
    except ModuleDown:
        raise
    except ApiError:
        return {"id": media_id, "status": "unavailable", "variants": {}}
    ref = {"id": media_id, "status": m.get("status"), "width": m.get("width"), "height": m.get("height"),
           "variants": {n: v["url"] for n, v in (m.get("variants") or {}).items()}}
    if rt.settings.cache_ttl > 0 and ref["status"] == "ready":
        await _remember(rt, _media_key(rt, media_id), ref)
    return ref


def author_of(post: dict[str, Any], profile: dict[str, Any] | None) -> dict[str, Any]:
    author = post.get("author") or {}
    avatar = (profile or {}).get("avatar") or None
    return {"username": author.get("username", ""),
            "display_name": (profile or {}).get("display_name") or author.get("display_name"),
            "avatar": avatar.get("variants") if isinstance(avatar, dict) else None}


async def enrich(rt: WebRuntime, posts: list[dict[str, Any]], degraded: list[str]) -> list[dict[str, Any]]:
    """Posts with their authors' profiles and media variants: what the cache holds in one Valkey read (a page
    of ten posts is one MGET, not one GET per author and image), the rest fetched in parallel."""
    usernames = sorted({p["author"]["username"] for p in posts if p.get("author")})
    media_ids = sorted({m for p in posts for m in p.get("media_ids", [])})
    keys = [_profile_key(rt, u) for u in usernames] + [_media_key(rt, m) for m in media_ids]
    fetchers = [partial(_fetch_profile, rt, u) for u in usernames] + [partial(_fetch_media, rt, m) for m in media_ids]
    results = await _from_cache(rt, keys)
    missing = [i for i, value in enumerate(results) if value is None]
    fetched = await asyncio.gather(*(_soft(fetchers[i](), degraded) for i in missing))
    for i, value in zip(missing, fetched, strict=True):
        results[i] = value
    profiles = dict(zip(usernames, results[:len(usernames)], strict=True))
    media = dict(zip(media_ids, results[len(usernames):], strict=True))
    return [{"post": p, "author": author_of(p, profiles.get(p["author"]["username"])),
             "media": [media[m] or {"id": m, "variants": {}} for m in p.get("media_ids", [])]} for p in posts]


FeedSource = Literal["home", "public", "tag", "user"]


async def feed_page(rt: WebRuntime, token: str | None, source: str, *, arg: str | None = None,
                    cursor: str | None = None, limit: int = 10) -> dict[str, Any]:
    """One page of a timeline, enriched; raises ModuleDown when the blog itself is down."""
    path = {"home": "/api/v1/feed/home", "public": "/api/v1/feed/public",
            "tag": f"/api/v1/feed/tag/{arg}", "user": f"/api/v1/feed/user/{arg}"}[source]
    page = await rt.api.get(path, token=token, params={"limit": limit, "cursor": cursor})
    degraded: list[str] = []
    items = await enrich(rt, page["items"], degraded)
    return {"source": source, "items": items, "next_cursor": page.get("next_cursor"), "degraded": degraded}


async def me_summary(rt: WebRuntime, token: str) -> dict[str, Any]:
    degraded: list[str] = []
    account, profile, messages, notes = await asyncio.gather(
        _soft(rt.api.get("/api/v1/auth/me", token=token), degraded),
        _soft(rt.api.get("/api/v1/users/me", token=token), degraded, optional=True),
        _soft(rt.api.get("/api/v1/messages/unread", token=token), degraded, optional=True),
        _soft(rt.api.get("/api/v1/notifications/unread-count", token=token), degraded, optional=True),
    )
    unread = None
    if messages is not None or notes is not None:
        unread = {"messages": int((messages or {}).get("total", 0)),
                  "notifications": int((notes or {}).get("unread", 0))}
    return {"account": account, "profile": profile, "unread": unread, "degraded": degraded}


# --------------------------------------------------------------------------- routes


async def _token(request: Request, rt: WebRuntime) -> str | None:
    """The bearer token, or the browser session's (refreshed if needed)."""
    header = request.headers.get("authorization")
    if header:
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthenticated("authorization header must be 'Bearer <token>'")
        return token.strip()
    sid = request.cookies.get(rt.settings.cookie_name)
    if sid and 20 <= len(sid) <= 100:
        sess = await rt.sessions.load(sid)
        if sess is not None:
            sess = await rt.sessions.fresh(sid, sess)
        if sess is not None:
            return str(sess.access_token)
    return None


def _json(body: BaseModel, rt: WebRuntime, private: bool) -> Response:
    headers = security_headers(rt)
    headers["Cache-Control"] = "private, no-store" if private else "public, max-age=5"
    headers["Vary"] = "Authorization, Cookie"
    return Response(body.model_dump_json(), media_type="application/json", headers=headers)


def _raise_api(exc: ApiError) -> None:
    """Pass a module's 4xx through as our own problem (a 5xx or down module is a 503)."""
    err = QuarkError(str(exc.problem.get("detail") or exc.problem.get("title") or "upstream error"),
                     code=exc.code or None, extra={"module": exc.module})
    err.status = exc.status if 400 <= exc.status < 500 and not isinstance(exc, ModuleDown) else 503
    err.title = str(exc.problem.get("title") or "Upstream error")
    raise err


@router.get("/me", response_model=MeOut, summary="Account + profile + unread counts in one answer")
async def get_me(request: Request) -> Response:
    """For the signed-in person (session cookie or bearer token); 401 otherwise."""
    rt = runtime(request)
    token = await _token(request, rt)
    if token is None:
        raise Unauthenticated("sign in first (session cookie or bearer token)")
    try:
        body = await me_summary(rt, token)
    except ApiError as exc:
        _raise_api(exc)
    if body["account"] is None and "auth" not in body["degraded"]:
        raise Unauthenticated("the session is no longer valid")
    return _json(MeOut(**body), rt, private=True)


@router.get("/feed", response_model=FeedOut, summary="A timeline page with authors and media resolved")
async def get_feed(
    request: Request,
    source: FeedSource = "home",
    tag: Annotated[str | None, Query(max_length=60)] = None,
    username: Annotated[str | None, Query(max_length=64)] = None,
    cursor: Annotated[str | None, Query(max_length=4000)] = None,
    limit: Annotated[int, Query(ge=1, le=50)] = 20,
) -> Response:
    """`source`: `home` (needs a session/token), `public`, `tag` (with `tag`) or `user` (with `username`).
    Cursors are the blog's own (`next_cursor`)."""
    rt = runtime(request)
    token = await _token(request, rt)
    arg = tag if source == "tag" else username if source == "user" else None
    if source in ("tag", "user") and not arg:
        raise InvalidInput(f"source={source} needs {'tag' if source == 'tag' else 'username'}",
                           field="tag" if source == "tag" else "username")
    if source == "home" and token is None:
        raise Unauthenticated("the home feed needs a session or a bearer token")
    try:
        body = await feed_page(rt, token, source, arg=arg, cursor=cursor, limit=limit)
    except ApiError as exc:
        _raise_api(exc)
    return _json(FeedOut(**body), rt, private=token is not None)

