"""HTTP routes of the user service: thin, they authorise, call service functions and shape responses.

Fixed paths (`/me…`, `/search`, `/admin/…`) are declared before `/{username}…`, so those words
can never be looked up as usernames.
"""

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Response

from quark_sdk.app import DbSession, RuntimeDep
from quark_sdk.auth import OptionalUser, Principal, UserId, WritingUser, require_role
from quark_sdk.errors import Unauthenticated
from quark_sdk.pagination import Cursor, Limit
from quark_sdk.routing import GuardedRoute
from quark_user import (
    accounts,
    activity,
    blocks,
    common,
    directory,
    follows,
    lists,
    profiles,
    sanctions,
    validation,
)
from quark_user.models import Profile
from quark_user.runtime import UserRuntime
from quark_user.schemas import (
    ActivityOut,
    ActivityPage,
    ActivityTarget,
    AdminUserOut,
    AdminUserPage,
    AvatarOut,
    EdgeOut,
    EdgePage,
    FollowResult,
    MeOut,
    ProfileOut,
    ProfileUpdate,
    Relationship,
    ReportCreate,
    ReportOut,
    SummaryPage,
    SuspendRequest,
    UserSummary,
)

router = APIRouter(prefix="/api/v1/users", tags=["users"], route_class=GuardedRoute)


Admin = Annotated[Principal, Depends(require_role("admin"))]
Runtime = Annotated[UserRuntime, RuntimeDep]
Username = Annotated[str, Path(min_length=1, max_length=64)]


def limits(rt: UserRuntime) -> validation.Limits:
    s = rt.settings
    return validation.Limits(display_name_max_length=s.display_name_max_length, bio_max_length=s.bio_max_length,
                          links_max_count=s.links_max_count, link_max_length=s.link_max_length)


def viewer(principal: Principal | None) -> common.Viewer:
    """Who is asking, for the privacy rules (anonymous, a service token or a user; admins see everything)."""
    if principal is None or not principal.is_user:
        return common.Viewer(None)
    return common.Viewer(common.parse_user_id(principal.subject), is_admin=principal.has_role("admin"))


# --------------------------------------------------------------------------- shaping


def avatar_out(p: Profile) -> AvatarOut | None:
    if p.avatar_media_id is None:
        return None
    return AvatarOut(media_id=p.avatar_media_id, variants=dict(p.avatar_variants or {}))


def summary(p: Profile) -> UserSummary:
    return UserSummary(user_id=p.user_id, username=p.username, display_name=p.display_name, avatar=avatar_out(p),
                       privacy=p.privacy)


def _base(p: Profile, *, full: bool) -> dict[str, Any]:
    out: dict[str, Any] = {
        "user_id": p.user_id, "username": p.username, "display_name": p.display_name, "avatar": avatar_out(p),
        "privacy": p.privacy, "followers_count": p.followers_count, "following_count": p.following_count,
        "created_at": p.created_at, "suspended": p.suspended, "restricted": not full,
    }
    if full:
        out.update(bio=p.bio, links=list(p.links), locale=p.locale)
    return out


def _private(p: Profile) -> dict[str, Any]:
    return {"avatar_pending_media_id": p.avatar_pending_media_id, "verified": p.verified, "roles": list(p.roles),
            "updated_at": p.updated_at, "last_login_at": p.last_login_at}


def me_out(p: Profile) -> MeOut:
    return MeOut(**_base(p, full=True), **_private(p))


def admin_out(p: Profile) -> AdminUserOut:
    return AdminUserOut(**_base(p, full=True), **_private(p), suspended_reason=p.suspended_reason,
                        suspended_at=p.suspended_at, suspended_by=p.suspended_by,
                        suspended_until=p.suspended_until)


def edge_page(items: list[common.Edge], next_cursor: str | None) -> EdgePage:
    return EdgePage(items=[EdgeOut(user=summary(e.profile), since=e.since) for e in items], next_cursor=next_cursor)


# --------------------------------------------------------------------------- the caller's own account


@router.get("/me", response_model=MeOut)
async def get_me(me: UserId, session: DbSession) -> MeOut:
    return me_out(await profiles.get_me(session, me))


@router.patch("/me", response_model=MeOut)
async def update_me(body: ProfileUpdate, writer: WritingUser, session: DbSession, rt: Runtime) -> MeOut:
    profile = await profiles.update_profile(session, actor=viewer(writer), changes=body.model_dump(exclude_unset=True),
                                           limits=limits(rt))
    return me_out(profile)


@router.get("/me/activity", response_model=ActivityPage)
async def my_activity(me: UserId, session: DbSession, rt: Runtime, limit: Limit = 20, cursor: Cursor = None,
                      kind: Annotated[str | None, Query(max_length=32)] = None) -> ActivityPage:
    items, next_cursor = await activity.list_activity(session, me, limit=limit, cursor=cursor,
                                                     kind=kind)
    return ActivityPage(items=[
        ActivityOut(id=i.entry.seq, kind=i.entry.kind, at=i.entry.created_at, data=dict(i.entry.data),
                    target=ActivityTarget(user_id=i.entry.target_id, username=i.target_username)
                    if i.entry.target_id is not None and i.target_username is not None else None)
        for i in items
    ], next_cursor=next_cursor)


@router.get("/me/follow-requests", response_model=EdgePage)
async def my_follow_requests(me: UserId, session: DbSession, rt: Runtime, limit: Limit = 20,
                             cursor: Cursor = None) -> EdgePage:
    return edge_page(*await lists.list_own(session, me, "requests", limit=limit,
                                             cursor=cursor))


@router.post("/me/follow-requests/{username}/approve", status_code=204)
async def approve_request(username: Username, _: WritingUser, me: UserId, session: DbSession) -> Response:
    await follows.approve_request(session, me, username)
    return Response(status_code=204)


@router.post("/me/follow-requests/{username}/reject", status_code=204)
async def reject_request(username: Username, _: WritingUser, me: UserId, session: DbSession) -> Response:
    await follows.reject_request(session, me, username)
    return Response(status_code=204)


@router.delete("/me/followers/{username}", status_code=204)
async def remove_follower(username: Username, _: WritingUser, me: UserId, session: DbSession) -> Response:
    await follows.remove_follower(session, me, username)
    return Response(status_code=204)


@router.get("/me/blocks", response_model=EdgePage)
async def my_blocks(me: UserId, session: DbSession, rt: Runtime, limit: Limit = 20,
                    cursor: Cursor = None) -> EdgePage:
    return edge_page(*await lists.list_own(session, me, "blocks", limit=limit,
                                             cursor=cursor))


@router.get("/me/mutes", response_model=EdgePage)
async def my_mutes(me: UserId, session: DbSession, rt: Runtime, limit: Limit = 20,
                   cursor: Cursor = None) -> EdgePage:
    return edge_page(*await lists.list_own(session, me, "mutes", limit=limit,
                                             cursor=cursor))


# --------------------------------------------------------------------------- search


@router.get("/search", response_model=SummaryPage)
async def search(session: DbSession, rt: Runtime, caller: OptionalUser,
                 q: Annotated[str, Query(min_length=1, max_length=64)], limit: Limit = 20,
                 cursor: Cursor = None) -> SummaryPage:
    items, next_cursor = await directory.search(session, viewer(caller), q, limit=limit,
                                              cursor=cursor)
    return SummaryPage(items=[summary(p) for p in items], next_cursor=next_cursor)


# --------------------------------------------------------------------------- admin


@router.get("/admin/users", response_model=AdminUserPage)
async def admin_users(admin: Admin, session: DbSession, rt: Runtime,
                      q: Annotated[str | None, Query(max_length=64)] = None, suspended: bool | None = None,
                      role: Annotated[str | None, Query(max_length=32)] = None, verified: bool | None = None,
                      limit: Limit = 20, cursor: Cursor = None) -> AdminUserPage:
    items, next_cursor = await accounts.admin_list(session, q=q, suspended=suspended, role=role, verified=verified,
                                                  limit=limit, cursor=cursor)
    return AdminUserPage(items=[admin_out(p) for p in items], next_cursor=next_cursor)


@router.post("/admin/users/{username}/suspend", response_model=AdminUserOut)
async def suspend(username: Username, admin: Admin, _: WritingUser, session: DbSession,
                  body: SuspendRequest | None = None) -> AdminUserOut:
    body = body or SuspendRequest()
    profile = await accounts.set_suspended(session, actor_id=admin.subject, username=username, suspended=True,
                                          reason=body.reason, duration_hours=body.duration_hours, until=body.until)
    return admin_out(profile)


@router.post("/admin/users/{username}/unsuspend", response_model=AdminUserOut)
async def unsuspend(username: Username, admin: Admin, _: WritingUser, session: DbSession) -> AdminUserOut:
    profile = await accounts.set_suspended(session, actor_id=admin.subject, username=username, suspended=False,
                                          reason=None)
    return admin_out(profile)


# --------------------------------------------------------------------------- anyone's profile


@router.get("/{username}", response_model=ProfileOut)
async def get_profile(username: Username, session: DbSession, caller: OptionalUser) -> ProfileOut:
    view = await profiles.get_profile(session, viewer(caller), username)
    rel = Relationship(**view.relationship) if view.relationship is not None else None
    return ProfileOut(**_base(view.profile, full=view.full), relationship=rel)


@router.patch("/{username}", response_model=AdminUserOut)
async def admin_update(username: Username, body: ProfileUpdate, admin: Admin, _: WritingUser, session: DbSession,
                       rt: Runtime) -> AdminUserOut:
    profile = await profiles.update_profile(session, actor=viewer(admin), changes=body.model_dump(exclude_unset=True),
                                           limits=limits(rt), username=username)
    return admin_out(profile)


@router.get("/{username}/followers", response_model=EdgePage)
async def followers(username: Username, session: DbSession, rt: Runtime, caller: OptionalUser,
                    limit: Limit = 20, cursor: Cursor = None) -> EdgePage:
    """Followers, newest first; `me` names the caller."""
    if username == "me" and caller is None:
        raise Unauthenticated("bearer token required")
    return edge_page(*await lists.list_follows(session, viewer(caller), username, direction="followers",
                                                 limit=limit, cursor=cursor))


@router.get("/{username}/following", response_model=EdgePage)
async def following(username: Username, session: DbSession, rt: Runtime, caller: OptionalUser,
                    limit: Limit = 20, cursor: Cursor = None) -> EdgePage:
    """Accounts followed, newest first; `me` names the caller."""
    if username == "me" and caller is None:
        raise Unauthenticated("bearer token required")
    return edge_page(*await lists.list_follows(session, viewer(caller), username, direction="following",
                                                 limit=limit, cursor=cursor))


@router.post("/{username}/follow", response_model=FollowResult, status_code=201,
             responses={202: {"model": FollowResult, "description": "a follow request was sent"}})
async def follow(username: Username, _: WritingUser, me: UserId, session: DbSession, rt: Runtime,
                 response: Response) -> FollowResult:
    s = rt.settings
    if s.follow_rate_limit:
        await rt.limiter.check(f"follow:{me}", limit=s.follow_rate_limit, window=s.follow_rate_window,
                            detail="too many follow attempts; try again later")
    status = await follows.follow(session, me, username)
    response.status_code = 201 if status == "following" else 202
    return FollowResult(status=status)


@router.post("/{username}/report", response_model=ReportOut, status_code=201)
async def report(username: Username, body: ReportCreate, _: WritingUser, me: UserId, session: DbSession,
                 rt: Runtime) -> ReportOut:
    """Report a profile to the moderators (once while the report is open; not oneself)."""
    row = await sanctions.report_profile(rt, session, me, username, body.reason)
    return ReportOut(id=row.id, user_id=row.user_id, status=row.status, created_at=row.created_at)


@router.delete("/{username}/follow", status_code=204)
async def unfollow(username: Username, _: WritingUser, me: UserId, session: DbSession) -> Response:
    await follows.unfollow(session, me, username)
    return Response(status_code=204)


@router.post("/{username}/block", status_code=204)
async def block(username: Username, _: WritingUser, me: UserId, session: DbSession) -> Response:
    await blocks.block(session, me, username)
    return Response(status_code=204)


@router.delete("/{username}/block", status_code=204)
async def unblock(username: Username, _: WritingUser, me: UserId, session: DbSession) -> Response:
    await blocks.unblock(session, me, username)
    return Response(status_code=204)


@router.post("/{username}/mute", status_code=204)
async def mute(username: Username, _: WritingUser, me: UserId, session: DbSession) -> Response:
    await blocks.mute(session, me, username)
    return Response(status_code=204)


@router.delete("/{username}/mute", status_code=204)
async def unmute(username: Username, _: WritingUser, me: UserId, session: DbSession) -> Response:
    await blocks.unmute(session, me, username)
    return Response(status_code=204)
