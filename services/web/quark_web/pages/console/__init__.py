"""The console: the pages of moderators, admins and operators (issue #19). Each page calls a module's API with
the person's own token, so the module's role checks decide (a 403 there is a 403 page here).

`moderation` — the one moderation queue and its cases; `audit` — the audit log; `users` — user
administration; `operator` — the operator's view of the fleet; `ai` — AI oversight. `access` says who may
enter each (403 for a signed-in person without the role).
"""

from fastapi import APIRouter, Request, Response

from quark_web.pagekit import WebRoute, page_of
from quark_web.pages.console import ai, audit, moderation, operator, users

landing = APIRouter(route_class=WebRoute, include_in_schema=False)


@landing.get("/console")
async def console_home(request: Request) -> Response:
    page = page_of(request)
    page.require_user()
    return page.render("console/index.html")


routers: list[APIRouter] = [landing, moderation.router, audit.router, users.router, operator.router, ai.router]
