"""AI oversight (admins): the AI module's runs and their cost, the quotas, the drafts waiting for their
authors, and the moderation thresholds — changed here with a reason, audited by `quark.ai.thresholds_changed`.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, Query, Request, Response

from quark_web import errors
from quark_web.pagekit import PageError, Redirect, WebRoute
from quark_web.pages.console.access import admin_page, clean_reason

router = APIRouter(route_class=WebRoute, include_in_schema=False)
AI = "/api/v1/ai"
RULE_FIELD = "rule:"  # form fields "rule:<name>" carry a rule's score


@router.get("/console/ai")
async def overview(request: Request, hours: Annotated[int, Query(ge=1, le=24 * 90)] = 24) -> Response:
    page = admin_page(request)
    usage = await page.call("GET", f"{AI}/admin/usage", params={"hours": hours})
    thresholds = await page.call("GET", f"{AI}/admin/thresholds")
    drafts = await page.call("GET", f"{AI}/admin/drafts", params={"status": "pending", "limit": 20})
    runs = await page.call("GET", f"{AI}/runs", params={"limit": 20})
    return page.render("console/ai/overview.html", usage=usage, thresholds=thresholds, drafts=drafts, runs=runs,
                       hours=hours, section="ai")


@router.post("/console/ai/thresholds")
async def save_thresholds(request: Request, threshold: Annotated[float, Form(gt=0, le=1)],
                          reason: Annotated[str, Form(max_length=500)] = "") -> Response:
    page = admin_page(request)
    form = await request.form()
    scores: dict[str, Any] = {}
    for key, value in form.multi_items():
        if key.startswith(RULE_FIELD) and isinstance(value, str) and value.strip():
            try:
                scores[key.removeprefix(RULE_FIELD)[:64]] = float(value)
            except ValueError:
                raise PageError(422, errors.FORM_INVALID) from None
    await page.call("PUT", f"{AI}/admin/thresholds",
                    json={"threshold": threshold, "rule_scores": scores, "reason": clean_reason(reason)})
    page.notice("console-thresholds-saved")
    raise Redirect("/console/ai")
