"""HTTP routes of blog: thin, they call the service modules.

Prefixes: /api/v1/posts, /api/v1/feed, /api/v1/comments, /api/v1/search. Every write needs a
user token and passes the per-user rate limit; every request body is capped
(`max_request_bytes`, 413) before it is parsed.
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request, Response

from quark_blog import categories, comments, feeds, moderation, reactions, reading, service
from quark_blog.comments import comments_of
from quark_blog.runtime import BlogRuntime
from quark_blog.schemas import (
    CategoryCreate,
    CategoryOut,
    CategoryPage,
    CommentCreate,
    CommentOut,
    CommentPage,
    CommentUpdate,
    ModerationRequest,
    MyPostPage,
    PostCreate,
    PostOut,
    PostPage,
    PostUpdate,
    PostWithComments,
    PreviewOut,
    PreviewRequest,
    ReactionRequest,
    ReactionsOut,
    ReportCreate,
    ReportOut,
    ReportPage,
    ResolveRequest,
    ScheduleRequest,
    SearchPage,
    TagPage,
)
from quark_sdk.app import DbSession, ReadSession, RuntimeDep
from quark_sdk.auth import (
    USER_TOKEN_REQUIRED,
    OptionalUser,
    Principal,
    UserId,
    UserPrincipal,
    WritingUser,
    current_user,
    require_role,
)
from quark_sdk.errors import InvalidInput, PermissionDenied
from quark_sdk.pagination import MAX_LIMIT, Cursor, Limit
from quark_sdk.routing import GuardedRoute

log = logging.getLogger("quark.blog")


Runtime = Annotated[BlogRuntime, RuntimeDep]
Moderator = Annotated[Principal, Depends(require_role("moderator"))]


async def writer(rt: Runtime, user: WritingUser) -> Principal:
    """A user allowed to write now: the SDK's `WritingUser` (a user token of an account that still stands —
    not deleted or suspended, per the revocation list — and verified, under the station's policy), within
    the blog's per-user write rate limit."""
    await service.check_writer(rt, user.subject)
    return user


async def moderating(user: Moderator, writing: WritingUser) -> Principal:
    """A moderator's write: the role, and an account that still stands (`WritingUser`)."""
    return user


Writer = Annotated[Principal, Depends(writer)]
ModeratorWriter = Annotated[Principal, Depends(moderating)]


PostId = Annotated[uuid.UUID, Path()]
CommentId = Annotated[uuid.UUID, Path()]
Username = Annotated[str, Path(min_length=1, max_length=64)]

posts = APIRouter(prefix="/api/v1/posts", tags=["posts"], route_class=GuardedRoute)
feed = APIRouter(prefix="/api/v1/feed", tags=["feed"], route_class=GuardedRoute)
comment_routes = APIRouter(prefix="/api/v1/comments", tags=["comments"], route_class=GuardedRoute)
search = APIRouter(prefix="/api/v1/search", tags=["search"], route_class=GuardedRoute)


def _viewer(user: Principal | None) -> str | None:
    """The caller as a viewer id for reads: a user's id, or None (anonymous, or a module's token)."""
    return user.subject if user is not None and user.is_user else None


def _page(items: list[Any], next_cursor: str | None) -> dict[str, Any]:
    return {"items": items, "next_cursor": next_cursor}


# --------------------------------------------------------------------------- posts: collection


@posts.post("", status_code=201, response_model=PostOut)
async def create_post(body: PostCreate, user: Writer, rt: Runtime, session: DbSession) -> PostOut:
    post = await service.create_post(rt, session, user, body)
    return PostOut.model_validate(await reading.post_out(session, user, post, just_created=True))


@posts.post("/preview")
async def preview(body: PreviewRequest, user: UserPrincipal, rt: Runtime) -> PreviewOut:
    """The body rendered by the same Markdown + sanitiser as a saved post (for editors' live preview);
    nothing is stored. 413 past `max_body_chars`."""
    return PreviewOut(body_html=service.render_preview(body.body, body.format, rt.settings.max_body_chars))


@posts.get("", response_model=PostPage)
async def list_posts(
    session: ReadSession,
    user: OptionalUser,
    limit: Limit = 20,
    cursor: Cursor = None,
    tag: Annotated[str | None, Query(max_length=60)] = None,
    category: Annotated[str | None, Query(max_length=64)] = None,
    author: Annotated[str | None, Query(max_length=64)] = None,
) -> PostPage:
    """Public posts, newest first; or those of one tag, category or author."""
    if sum(x is not None for x in (tag, category, author)) > 1:
        raise InvalidInput("filter by one of tag, category, author")
    if tag is not None:
        return PostPage.model_validate(_page(*await feeds.tag_timeline(session, _viewer(user), tag, limit, cursor)))
    if category is not None:
        return PostPage.model_validate(
            _page(*await feeds.category_timeline(session, _viewer(user), category, limit, cursor))
        )
    if author is not None:
        return PostPage.model_validate(
            _page(*await feeds.author_timeline(session, _viewer(user), author, limit, cursor))
        )
    return PostPage.model_validate(_page(*await feeds.public_timeline(session, _viewer(user), limit, cursor)))


@posts.get("/mine", response_model=MyPostPage)
async def my_posts(
    user: UserPrincipal,
    uid: UserId,
    session: DbSession,
    limit: Limit = 20,
    cursor: Cursor = None,
    status: Literal["draft", "scheduled", "published"] | None = None,
) -> MyPostPage:
    """The caller's own posts in every state (drafts, scheduled, published, hidden), newest first."""
    rows, nxt = await feeds.my_posts(session, str(uid), status, limit, cursor)
    return MyPostPage.model_validate(_page([await reading.post_out(session, user, p) for p in rows], nxt))


@posts.get("/tags", response_model=TagPage)
async def list_tags(
    session: DbSession,
    limit: Limit = 50,
    cursor: Cursor = None,
    prefix: Annotated[str | None, Query(max_length=40)] = None,
) -> TagPage:
    """Tags with their number of listed public posts, most used first."""
    return TagPage.model_validate(_page(*await feeds.list_tags(session, limit, cursor, prefix)))


@posts.get("/tags/{tag}", response_model=PostPage)
async def posts_by_tag(
    tag: Annotated[str, Path(max_length=60)],
    session: ReadSession,
    user: OptionalUser,
    limit: Limit = 20,
    cursor: Cursor = None,
) -> PostPage:
    return PostPage.model_validate(_page(*await feeds.tag_timeline(session, _viewer(user), tag, limit, cursor)))


@posts.get("/categories", response_model=CategoryPage)
async def list_categories(session: DbSession, limit: Limit = 50, cursor: Cursor = None) -> CategoryPage:
    return CategoryPage.model_validate(_page(*await feeds.list_categories(session, limit, cursor)))


@posts.post("/categories", status_code=201, response_model=CategoryOut)
async def create_category(body: CategoryCreate, user: ModeratorWriter, session: DbSession) -> CategoryOut:
    c = await categories.create_category(session, body)
    return CategoryOut.model_validate(
        {"slug": c.slug, "name": c.name, "description": c.description, "post_count": c.post_count}
    )


@posts.get("/categories/{slug}", response_model=PostPage)
async def posts_by_category(
    slug: Annotated[str, Path(max_length=64)],
    session: ReadSession,
    user: OptionalUser,
    limit: Limit = 20,
    cursor: Cursor = None,
) -> PostPage:
    return PostPage.model_validate(_page(*await feeds.category_timeline(session, _viewer(user), slug, limit, cursor)))


@posts.get("/by/{username}", response_model=PostPage)
async def blog_of(
    username: Username, session: DbSession, user: OptionalUser, limit: Limit = 20, cursor: Cursor = None
) -> PostPage:
    """A personal blog: the author's published posts the caller may see, newest first."""
    return PostPage.model_validate(_page(*await feeds.author_timeline(session, _viewer(user), username, limit, cursor)))


@posts.get("/by/{username}/{slug}", response_model=PostWithComments)
async def blog_post(
    username: Username,
    slug: Annotated[str, Path(max_length=100)],
    session: ReadSession,
    user: OptionalUser,
    comments: Annotated[
        int,
        Query(
            ge=0,
            le=MAX_LIMIT,
            description=f"also the first page of this many comments (0 to {MAX_LIMIT}; 0: none), as `comments` "
            "— a post page in one request",
        ),
    ] = 0,
) -> PostWithComments:
    """A post by its author's username and its slug; with `comments`, also its first page of comments."""
    post = await reading.get_post_by_slug(session, user, username, slug)
    out = await reading.post_out(session, user, post)
    if comments:
        out["comments"] = _page(*await comments_of(session, user, post, comments, None))
    return PostWithComments.model_validate(out)


# --------------------------------------------------------------------------- moderation queue


@posts.get("/moderation/queue", response_model=ReportPage)
async def moderation_queue(
    user: Moderator,
    session: DbSession,
    limit: Limit = 50,
    cursor: Cursor = None,
    status: Literal["open", "resolved"] = "open",
) -> ReportPage:
    """Reports and automatic flags, oldest first, with the target's state and a preview."""
    return ReportPage.model_validate(_page(*await moderation.queue(session, limit, cursor, status)))


@posts.post("/moderation/reports/{report_id}/resolve", response_model=ReportOut)
async def resolve_report(
    report_id: uuid.UUID, body: ResolveRequest, user: ModeratorWriter, rt: Runtime, session: DbSession
) -> ReportOut:
    row = await moderation.resolve(rt, session, user, report_id, body.action, body.reason)
    return ReportOut.model_validate(moderation.report_out(row))


# --------------------------------------------------------------------------- posts: one


@posts.get("/{post_id}", response_model=PostOut)
async def get_post(post_id: PostId, session: DbSession, user: OptionalUser) -> PostOut:
    post = await reading.get_post(session, user, post_id)
    return PostOut.model_validate(await reading.post_out(session, user, post))


@posts.patch("/{post_id}", response_model=PostOut)
async def update_post(post_id: PostId, body: PostUpdate, user: Writer, rt: Runtime, session: DbSession) -> PostOut:
    post = await service.update_post(rt, session, user, post_id, body)
    return PostOut.model_validate(await reading.post_out(session, user, post))


@posts.delete("/{post_id}", status_code=204)
async def delete_post(post_id: PostId, user: Writer, rt: Runtime, session: DbSession) -> Response:
    await service.delete_post(rt, session, user, post_id)
    return Response(status_code=204)


@posts.post("/{post_id}/publish", response_model=PostOut)
async def publish_post(post_id: PostId, user: Writer, rt: Runtime, session: DbSession) -> PostOut:
    post = await service.publish_post(rt, session, user, post_id)
    return PostOut.model_validate(await reading.post_out(session, user, post))


@posts.post("/{post_id}/schedule", response_model=PostOut)
async def schedule_post(
    post_id: PostId, body: ScheduleRequest, user: Writer, rt: Runtime, session: DbSession
) -> PostOut:
    post = await service.schedule_post(rt, session, user, post_id, body.at)
    return PostOut.model_validate(await reading.post_out(session, user, post))


@posts.post("/{post_id}/unpublish", response_model=PostOut)
async def unpublish_post(post_id: PostId, user: Writer, rt: Runtime, session: DbSession) -> PostOut:
    post = await service.unpublish_post(rt, session, user, post_id)
    return PostOut.model_validate(await reading.post_out(session, user, post))


@posts.post("/{post_id}/hide", response_model=PostOut)
async def hide_post(
    post_id: PostId, user: ModeratorWriter, rt: Runtime, session: DbSession, body: ModerationRequest | None = None
) -> PostOut:
    post = await service.moderate_post(rt, session, user, post_id, hidden=True, reason=body.reason if body else None)
    return PostOut.model_validate(await reading.post_out(session, user, post))


@posts.post("/{post_id}/restore", response_model=PostOut)
async def restore_post(
    post_id: PostId, user: ModeratorWriter, rt: Runtime, session: DbSession, body: ModerationRequest | None = None
) -> PostOut:
    post = await service.moderate_post(rt, session, user, post_id, hidden=False, reason=body.reason if body else None)
    return PostOut.model_validate(await reading.post_out(session, user, post))


@posts.post("/{post_id}/report", status_code=201, response_model=ReportOut)
async def report_post(post_id: PostId, body: ReportCreate, user: Writer, rt: Runtime, session: DbSession) -> ReportOut:
    return ReportOut.model_validate(
        moderation.report_out(await moderation.report(rt, session, user, "post", post_id, body.reason))
    )


@posts.get("/{post_id}/reactions", response_model=ReactionsOut)
async def get_reactions(post_id: PostId, session: DbSession, user: OptionalUser) -> ReactionsOut:
    return ReactionsOut.model_validate(await reactions.reactions_of(session, user, post_id))


@posts.post("/{post_id}/reactions", status_code=201, response_model=ReactionsOut)
async def add_reaction(
    post_id: PostId, body: ReactionRequest, user: Writer, rt: Runtime, session: DbSession
) -> ReactionsOut:
    """One reaction of each kind per user; reacting twice with the same kind is a 409."""
    counts = await reactions.add_reaction(rt, session, user, post_id, body.kind)
    return ReactionsOut.model_validate(
        {"post_id": post_id, "counts": counts, "mine": await _mine(session, post_id, user)}
    )


@posts.delete("/{post_id}/reactions/{kind}", response_model=ReactionsOut)
async def remove_reaction(
    post_id: PostId, kind: Annotated[str, Path(max_length=20)], user: Writer, rt: Runtime, session: DbSession
) -> ReactionsOut:
    counts = await reactions.remove_reaction(rt, session, user, post_id, kind)
    return ReactionsOut.model_validate(
        {"post_id": post_id, "counts": counts, "mine": await _mine(session, post_id, user)}
    )


async def _mine(session: DbSession, post_id: uuid.UUID, user: Principal) -> list[str]:
    mine: list[str] = (await reactions.reactions_of(session, user, post_id))["mine"]
    return mine


@posts.post("/{post_id}/comments", status_code=201, response_model=CommentOut)
async def create_comment(
    post_id: PostId, body: CommentCreate, user: Writer, rt: Runtime, session: DbSession
) -> CommentOut:
    c = await comments.create_comment(rt, session, user, post_id, body)
    return CommentOut.model_validate(await comments.get_comment(session, user, c.id))


@posts.get("/{post_id}/comments", response_model=CommentPage)
async def list_comments(
    post_id: PostId, session: ReadSession, user: OptionalUser, limit: Limit = 50, cursor: Cursor = None
) -> CommentPage:
    """Comments in thread order (depth-first: each reply follows its parent), with `depth` and `parent_id`."""
    return CommentPage.model_validate(_page(*await comments.list_comments(session, user, post_id, limit, cursor)))


# --------------------------------------------------------------------------- comments


@comment_routes.get("/mine", response_model=CommentPage)
async def my_comments(
    user: UserPrincipal, uid: UserId, session: DbSession, limit: Limit = 20, cursor: Cursor = None
) -> CommentPage:
    """The caller's own comments, newest first — including those orphaned on a deleted post."""
    return CommentPage.model_validate(_page(*await comments.my_comments(session, user, str(uid), limit, cursor)))


@comment_routes.get("/{comment_id}", response_model=CommentOut)
async def get_comment(comment_id: CommentId, session: DbSession, user: OptionalUser) -> CommentOut:
    return CommentOut.model_validate(await comments.get_comment(session, user, comment_id))


@comment_routes.patch("/{comment_id}", response_model=CommentOut)
async def update_comment(
    comment_id: CommentId, body: CommentUpdate, user: Writer, rt: Runtime, session: DbSession
) -> CommentOut:
    await comments.update_comment(rt, session, user, comment_id, body)
    return CommentOut.model_validate(await comments.get_comment(session, user, comment_id))


@comment_routes.delete("/{comment_id}", status_code=204)
async def delete_comment(comment_id: CommentId, user: Writer, rt: Runtime, session: DbSession) -> Response:
    await comments.delete_comment(rt, session, user, comment_id)
    return Response(status_code=204)


@comment_routes.post("/{comment_id}/hide", response_model=CommentOut)
async def hide_comment(
    comment_id: CommentId, user: ModeratorWriter, rt: Runtime, session: DbSession, body: ModerationRequest | None = None
) -> CommentOut:
    await comments.moderate_comment(rt, session, user, comment_id, hidden=True, reason=body.reason if body else None)
    return CommentOut.model_validate(await comments.get_comment(session, user, comment_id))


@comment_routes.post("/{comment_id}/restore", response_model=CommentOut)
async def restore_comment(
    comment_id: CommentId, user: ModeratorWriter, rt: Runtime, session: DbSession, body: ModerationRequest | None = None
) -> CommentOut:
    await comments.moderate_comment(rt, session, user, comment_id, hidden=False, reason=body.reason if body else None)
    return CommentOut.model_validate(await comments.get_comment(session, user, comment_id))


@comment_routes.post("/{comment_id}/report", status_code=201, response_model=ReportOut)
async def report_comment(
    comment_id: CommentId, body: ReportCreate, user: Writer, rt: Runtime, session: DbSession
) -> ReportOut:
    return ReportOut.model_validate(
        moderation.report_out(await moderation.report(rt, session, user, "comment", comment_id, body.reason))
    )


# --------------------------------------------------------------------------- feeds


_HOME_PARAMETERS = [
    {
        "name": "limit",
        "in": "query",
        "required": False,
        "schema": {"type": "integer", "minimum": 1, "maximum": 100, "default": 20},
    },
    {"name": "cursor", "in": "query", "required": False, "schema": {"type": "string", "maxLength": 4000}},
]


def _home_params(request: Request) -> tuple[int, str | None]:
    """`limit` (1..100, default 20) and `cursor`, read by hand: FastAPI's dependency and parameter
    machinery costs ~0.1 ms per request, a tenth of the whole home page (see docs/blog.md)."""
    query = request.query_params
    raw = query.get("limit")
    limit = 20
    if raw is not None:
        if not (raw.isascii() and raw.isdigit() and len(raw) <= 3) or not 1 <= int(raw) <= 100:
            raise InvalidInput("limit must be an integer from 1 to 100", field="limit")
        limit = int(raw)
    cursor = query.get("cursor")
    if cursor is not None and len(cursor) > 4000:
        raise InvalidInput("cursor is too long", field="cursor")
    return limit, cursor or None


@feed.get("/home", response_model=PostPage, openapi_extra={"parameters": _HOME_PARAMETERS})
async def home(request: Request) -> Response:
    """Posts of the authors the caller follows, and the caller's own, newest first.

    The hot path of the platform: Redis for the page's ids, one asyncpg query to hydrate and
    check them, JSON written directly (the response model documents the shape). Parameters
    `limit` and `cursor` (declared for OpenAPI) are read by hand, and the caller through the
    token cache, to keep framework work per request small."""
    rt: BlogRuntime = request.app.state.quark.runtime
    user = await current_user(request)
    limit, cursor = _home_params(request)
    if not user.is_user:
        raise PermissionDenied(USER_TOKEN_REQUIRED)
    items, nxt = await feeds.home_timeline(rt, user.subject, limit, cursor)
    return Response(content=feeds.page_json(items, nxt), media_type="application/json")


@feed.get("/public", response_model=PostPage)
async def public(session: ReadSession, user: OptionalUser, limit: Limit = 20, cursor: Cursor = None) -> PostPage:
    return PostPage.model_validate(_page(*await feeds.public_timeline(session, _viewer(user), limit, cursor)))


@feed.get("/user/{username}", response_model=PostPage)
async def user_feed(
    username: Username, session: ReadSession, user: OptionalUser, limit: Limit = 20, cursor: Cursor = None
) -> PostPage:
    return PostPage.model_validate(_page(*await feeds.author_timeline(session, _viewer(user), username, limit, cursor)))


@feed.get("/tag/{tag}", response_model=PostPage)
async def tag_feed(
    tag: Annotated[str, Path(max_length=60)],
    session: ReadSession,
    user: OptionalUser,
    limit: Limit = 20,
    cursor: Cursor = None,
) -> PostPage:
    return PostPage.model_validate(_page(*await feeds.tag_timeline(session, _viewer(user), tag, limit, cursor)))


# --------------------------------------------------------------------------- search


@search.get("", response_model=SearchPage)
async def search_posts(
    session: ReadSession,
    user: OptionalUser,
    q: Annotated[str, Query(min_length=1, max_length=200)],
    tag: Annotated[str | None, Query(max_length=60)] = None,
    author: Annotated[str | None, Query(max_length=64)] = None,
    category: Annotated[str | None, Query(max_length=64)] = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: Limit = 20,
    cursor: Cursor = None,
) -> SearchPage:
    """Full-text search over title (weight A), tags (B) and body (C); ranked, with highlighted snippets.

    Filters: `tag`, `category`, `author` (username), `since`/`until` (published time)."""
    return SearchPage.model_validate(
        _page(
            *await feeds.search_posts(
                session,
                _viewer(user),
                q=q,
                tag=tag,
                author=author,
                since=since,
                until=until,
                limit=limit,
                cursor=cursor,
                category=category,
            )
        )
    )


# The feed router first: routing (and the tracing middleware's route lookup) tries routes in order,
# and the home timeline is the hottest path.
routers = [feed, posts, comment_routes, search]
