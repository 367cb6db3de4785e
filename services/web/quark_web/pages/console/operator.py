"""The operator's view (admins holding the `operator` role): the fleet from the hub's operator API.

* `/console/operator` — modules and instances with their health history, links to each module's OpenAPI
  document and to Grafana (`QUARK_WEB_GRAFANA_URL`);
* `/console/operator/infra` — PostgreSQL per module, Valkey, NATS JetStream streams and consumers;
* `/console/operator/dead-letters` — inspect, replay (same event id: consumers apply it once), discard;
* `/console/operator/logs` — a module's recent log records, by level, trace id or text.

This is the production home of what the hub's `/hub` page shows in development (where `/hub` stays open).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, Path, Query, Request, Response

from quark_web.pagekit import Redirect, WebRoute
from quark_web.pages.console.access import clean_reason, operator_page

router = APIRouter(route_class=WebRoute, include_in_schema=False)
HUB = "/api/v1/hub/operator"
Seq = Annotated[int, Path(ge=1, le=2**63 - 1)]
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
# Panels of the provisioned fleet dashboard (deploy/grafana/dashboards/fleet.json), linked when Grafana is set.
GRAFANA_PANELS = (("Fleet dashboard", "/d/quark-fleet/quark-fleet"),
                  ("Explore logs (Loki)", "/explore"))


@router.get("/console/operator")
async def overview(request: Request) -> Response:
    page = operator_page(request)
    snap = await page.call("GET", f"{HUB}/overview")
    grafana = page.rt.settings.grafana_url
    links = [(title, grafana.rstrip("/") + path) for title, path in GRAFANA_PANELS] if grafana else []
    return page.render("console/operator/overview.html", snap=snap, grafana=links, section="operator")


ModuleP = Annotated[str, Path(pattern=r"^[a-z][a-z0-9-]{0,31}$")]
LifecycleP = Annotated[str, Path(pattern="^(enable|disable|upgrade|remove)$")]


@router.post("/console/operator/modules/{name}/{action}")
async def lifecycle(request: Request, name: ModuleP, action: LifecycleP,
                    to_version: Annotated[str, Form(max_length=64)] = "") -> Response:
    """Module lifecycle through the hub's API (docs/hub.md, "Module lifecycle"): drain, re-enable, finish an
    upgrade, remove. The hub checks the admin role again and publishes `quark.hub.module.*` with the actor."""
    page = operator_page(request)
    base = f"/api/v1/hub/modules/{name}"
    if action == "remove":
        await page.call("DELETE", base, params={"purge_data": "false"})
    elif action == "upgrade":
        await page.call("POST", f"{base}/upgrade", json={"to_version": to_version.strip()})
    else:
        await page.call("POST", f"{base}/{action}")
    page.notice("console-lifecycle")
    raise Redirect("/console/operator")


@router.get("/console/operator/infra")
async def infra(request: Request) -> Response:
    page = operator_page(request)
    status = await page.call("GET", f"{HUB}/infra", timeout=20)
    return page.render("console/operator/infra.html", infra=status, section="operator")


@router.get("/console/operator/dead-letters")
async def dead_letters(request: Request, after: Annotated[int, Query(ge=0)] = 0,
                       consumer: Annotated[str | None, Query(max_length=100)] = None) -> Response:
    page = operator_page(request)
    listing = await page.call("GET", f"{HUB}/dead-letters", params={"after": after, "consumer": consumer or None})
    return page.render("console/operator/dead_letters.html", listing=listing, consumer=consumer or "",
                       section="operator")


@router.get("/console/operator/dead-letters/{seq}")
async def dead_letter(request: Request, seq: Seq) -> Response:
    page = operator_page(request)
    item: dict[str, Any] = await page.call("GET", f"{HUB}/dead-letters/{seq}")
    import json

    pretty = json.dumps(item.get("event"), indent=2, ensure_ascii=False) if item.get("event") else item.get("raw")
    return page.render("console/operator/dead_letter.html", item=item, pretty=pretty or "", section="operator")


@router.post("/console/operator/dead-letters/{seq}/replay")
async def replay(request: Request, seq: Seq, reason: Annotated[str, Form(max_length=500)] = "") -> Response:
    page = operator_page(request)
    await page.call("POST", f"{HUB}/dead-letters/{seq}/replay", json={"reason": clean_reason(reason)})
    page.notice("console-replayed")
    raise Redirect("/console/operator/dead-letters")


@router.post("/console/operator/dead-letters/{seq}/discard")
async def discard(request: Request, seq: Seq, reason: Annotated[str, Form(max_length=500)] = "") -> Response:
    page = operator_page(request)
    await page.call("DELETE", f"{HUB}/dead-letters/{seq}", params={"reason": clean_reason(reason)})
    page.notice("console-discarded")
    raise Redirect("/console/operator/dead-letters")


@router.get("/console/operator/logs")
async def logs(request: Request, module: Annotated[str | None, Query(pattern=r"^[a-z][a-z0-9-]{0,31}$")] = None,
               level: Annotated[str | None, Query(pattern="^(|DEBUG|INFO|WARNING|ERROR|CRITICAL)$")] = None,
               trace_id: Annotated[str | None, Query(pattern="^(|[0-9a-f]{32})$")] = None,
               q: Annotated[str | None, Query(max_length=200)] = None) -> Response:
    page = operator_page(request)
    snap = await page.call("GET", f"{HUB}/overview")
    names = [m["name"] for m in snap.get("modules", [])]
    records: dict[str, Any] | None = None
    if module:
        records = await page.call("GET", f"{HUB}/modules/{module}/logs",
                                  params={"level": level or None, "trace_id": trace_id or None, "q": q or None,
                                          "limit": 300})
    return page.render("console/operator/logs.html", names=names, module=module or "", level=level or "",
                       trace_id=trace_id or "", q=q or "", records=records, levels=LEVELS, section="operator")
