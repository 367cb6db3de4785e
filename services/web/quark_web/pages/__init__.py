"""The pages, one router per area (each with its templates under templates/<area>/).

Order matters for the last one: `site.fallback` answers every path nobody else claims (404 page). Otherwise
it is the order a request's path is matched in (FastAPI tries each route in turn, ~1.5 us each): the pages
people open most (reading, the messenger, profiles) come first, the rare ones (sign-up, settings, the
console) after them. No two routers claim the same path.
"""

from fastapi import APIRouter

from quark_web.pages import auth, chatadmin, console, messenger, pwa, reading, site, social, twofactor, writing

routers: list[APIRouter] = [site.router, reading.router, messenger.router, social.router, writing.router,
                             chatadmin.router, auth.router, twofactor.router, pwa.router, *console.routers,
                             site.fallback]
