"""HTTP routes of the media service: thin, they authorise, call service functions and shape responses.

Fixed paths (`/usage`) are declared before `/{media_id}` so they can never be read as ids.
"""

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Path, Query, Request, Response
from fastapi.responses import RedirectResponse, StreamingResponse

from quark_media import ingest, reports, service
from quark_media.runtime import MediaRuntime
from quark_media.schemas import MediaOut, MediaPage, ReportCreate, ReportOut, Status, UsageOut
from quark_media.upload import MultipartUpload
from quark_sdk.app import DbSession, RuntimeDep
from quark_sdk.auth import AnyPrincipal, OptionalUser, Principal, UserId, UserPrincipal, WritingUser, writing_user
from quark_sdk.errors import PermissionDenied
from quark_sdk.pagination import Cursor, Limit

router = APIRouter(prefix="/api/v1/media", tags=["media"])

# Variants never change under an id: cache them for a year. Browsers must not sniff or run them.
IMMUTABLE = "public, max-age=31536000, immutable"
SAFE_HEADERS = {"X-Content-Type-Options": "nosniff", "Content-Security-Policy": "default-src 'none'; sandbox"}


async def attaching(request: Request, principal: AnyPrincipal) -> Principal:
    """A module's service token, or a user whose account still stands (WritingUser's checks)."""
    if principal.is_service:
        return principal
    return await writing_user(request, principal)


Attacher = Annotated[Principal, Depends(attaching)]
MediaId = Annotated[str, Path(min_length=1, max_length=64)]
Runtime = Annotated[MediaRuntime, RuntimeDep]


def viewer_of(principal: Principal | None) -> tuple[uuid.UUID | None, bool]:
    if principal is None or not principal.is_user:
        return None, False
    try:
        return uuid.UUID(principal.subject), principal.has_role("admin")
    except ValueError:
        return None, principal.has_role("admin")


UPLOAD_BODY = {
    "required": True,
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "required": ["file"],
                "properties": {"file": {"type": "string", "format": "binary"}},
            },
            "encoding": {"file": {"contentType": "image/jpeg, image/png, image/webp, image/gif"}},
        }
    },
}


@router.post(
    "",
    openapi_extra={"requestBody": UPLOAD_BODY},
    status_code=201,
    response_model=MediaOut,
    responses={
        413: {"description": "larger than `max_upload_bytes`"},
        415: {"description": "the request is not multipart/form-data"},
        403: {"description": "quota exceeded"},
        422: {"description": "not a JPEG/PNG/WebP/GIF by content, markup inside, empty, truncated, too many pixels"},
    },
)
async def upload(
    request: Request,
    rt: Runtime,
    _: WritingUser,
    owner: UserId,
    purpose: Annotated[str | None, Query(max_length=32, pattern=r"^[a-z][a-z0-9_-]{0,31}$")] = None,
) -> MediaOut:
    """Upload one image as multipart/form-data (`file` part; `purpose` as a field before it or a query
    parameter). Answers 201 with status `uploaded`; variants follow (`quark.media.processed`)."""
    settings = rt.settings
    length = request.headers.get("content-length")
    declared = int(length) if length and length.isdigit() else None
    body = MultipartUpload(
        request.headers.get("content-type"),
        request.stream().__aiter__(),
        max_body=settings.max_upload_bytes + service.MULTIPART_OVERHEAD,
    )
    media = await ingest.upload(rt, owner, body, purpose=purpose, declared_length=declared)
    return service.to_out(rt, media, private=True)


@router.get("", response_model=MediaPage)
async def list_mine(
    rt: Runtime,
    session: DbSession,
    principal: UserPrincipal,
    me: UserId,
    limit: Limit = 20,
    cursor: Cursor = None,
    status: Status | None = None,
    owner_id: Annotated[uuid.UUID | None, Query(description="admins only")] = None,
) -> MediaPage:
    """The caller's media (an admin may pass `owner_id`), newest first."""
    owner = me
    if owner_id is not None and owner_id != owner:
        if not principal.has_role("admin"):
            raise PermissionDenied("only admins may list another user's media")
        owner = owner_id
    return await service.list_media(rt, session, owner, limit=limit, cursor=cursor, status=status)


@router.get("/usage", response_model=UsageOut)
async def my_usage(rt: Runtime, session: DbSession, me: UserId) -> UsageOut:
    """How much of the quota the caller uses."""
    return await service.usage(rt, session, me)


@router.get("/{media_id}", response_model=MediaOut)
async def get_media(rt: Runtime, media_id: MediaId, principal: OptionalUser) -> MediaOut:
    """Metadata. Ready media are public; others are visible to their owner and admins only."""
    viewer, admin = viewer_of(principal)
    return await service.get_media(rt, media_id, viewer=viewer, admin=admin)


@router.get(
    "/{media_id}/variants/{name}",
    response_class=Response,
    responses={
        200: {"content": {"image/webp": {}}},
        302: {"description": "presigned S3 URL"},
        304: {"description": "ETag matched"},
    },
)
async def variant(
    request: Request,
    rt: Runtime,
    session: DbSession,
    media_id: MediaId,
    name: Annotated[str, Path(max_length=16)],
    if_none_match: Annotated[str | None, Header(max_length=2000)] = None,
) -> Response:
    """The bytes of a variant (thumb, medium, original): streamed, or a redirect to a presigned URL."""
    d = await service.deliver_variant(
        rt, session, media_id, name, if_none_match=if_none_match, body=request.method == "GET"
    )
    headers = {"ETag": d.etag, "Cache-Control": IMMUTABLE, **SAFE_HEADERS}
    if d.not_modified:
        return Response(status_code=304, headers=headers)
    if d.redirect is not None:
        ttl = max(60, rt.settings.presign_ttl // 2)
        return RedirectResponse(
            d.redirect, status_code=302, headers={"Cache-Control": f"private, max-age={ttl}", "ETag": d.etag}
        )
    headers["Content-Length"] = str(d.size)
    if d.chunks is None:
        return Response(status_code=200, headers=headers, media_type=d.content_type)
    return StreamingResponse(d.chunks, headers=headers, media_type=d.content_type)


# HEAD answers like GET without reading the object (its own operation, kept out of the schema).
router.add_api_route(
    "/{media_id}/variants/{name}",
    variant,
    methods=["HEAD"],
    response_class=Response,
    include_in_schema=False,
    name="variant_head",
)


@router.post("/{media_id}/attach", response_model=MediaOut)
async def attach(rt: Runtime, session: DbSession, media_id: MediaId, principal: Attacher) -> MediaOut:
    """Mark media as used so the orphan sweep keeps it (owner, admin, or a module's service token)."""
    viewer, admin = viewer_of(principal)
    return await service.attach(rt, session, media_id, actor=viewer, admin=admin, service=principal.is_service)


@router.post("/{media_id}/report", status_code=201, response_model=ReportOut)
async def report(rt: Runtime, session: DbSession, media_id: MediaId, body: ReportCreate, _: WritingUser,
                 me: UserId) -> ReportOut:
    """Report a file to the moderators (once while the report is open; not one's own)."""
    return await reports.report_media(rt, session, me, media_id, body.reason)


@router.delete("/{media_id}", status_code=204, response_class=Response)
async def delete(
    rt: Runtime, session: DbSession, media_id: MediaId, principal: WritingUser, me: UserId
) -> Response:
    """Delete media and its objects (owner or admin)."""
    await service.delete_media(rt, session, media_id, actor=me, admin=principal.has_role("admin"))
    return Response(status_code=204)
