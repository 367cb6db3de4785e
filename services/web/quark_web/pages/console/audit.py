"""The audit log (`/console/audit`, admins): who did what, when and why, newest first, with filters and
the export (CSV, JSON lines) streamed through from the moderation module."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request, Response

from quark_web import errors
from quark_web.pagekit import PageError, WebRoute, page_of

router = APIRouter(route_class=WebRoute, include_in_schema=False)
API = "/api/v1/moderation/audit"
Text = Annotated[str | None, Query(max_length=128)]


def _filters(actor_id: str | None, action: str | None, module: str | None, target_id: str | None) -> dict[str, str]:
    return {k: v.strip() for k, v in {"actor_id": actor_id, "action": action, "module": module,
                                      "target_id": target_id}.items() if v and v.strip()}


@router.get("/console/audit")
async def audit_log(request: Request, actor_id: Text = None, action: Text = None, module: Text = None,
                    target_id: Text = None, cursor: Annotated[str | None, Query(max_length=400)] = None) -> Response:
    page = page_of(request)
    page.require_user()
    params = _filters(actor_id, action, module, target_id)
    listing: dict[str, Any] = await page.call("GET", API, params={**params, "limit": 50,
                                                                  **({"cursor": cursor} if cursor else {})})
    nxt = f"/console/audit?{urlencode({**params, 'cursor': listing['next_cursor']})}" \
        if listing.get("next_cursor") else None
    return page.render("console/audit.html", listing=listing, filters=params, next_url=nxt,
                       query=urlencode(params), section="audit")


@router.get("/console/audit/export.{fmt}")
async def export(request: Request, fmt: str, actor_id: Text = None, action: Text = None, module: Text = None,
                 target_id: Text = None) -> Response:
    page = page_of(request)
    page.require_user()
    if fmt not in ("csv", "jsonl"):
        raise PageError(404, errors.NOT_FOUND)
    params = {**_filters(actor_id, action, module, target_id), "format": fmt}
    content = await page.call("GET", f"{API}/export", params=params)
    media = "text/csv; charset=utf-8" if fmt == "csv" else "application/jsonl"
    return Response(content or b"", media_type=media,
                    headers={"Content-Disposition": f'attachment; filename="quark-audit.{fmt}"'})
