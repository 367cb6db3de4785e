"""The pages, one router per area (each with its templates under templates/<area>/).

Order matters only for the last one: `site.fallback` answers every path nobody else claims (404 page).
"""

from fastapi import APIRouter

from quark_web.pages import auth, chatadmin, console, messenger, pwa, reading, site, social, twofactor, writing

routers: list[APIRouter] = [site.router, auth.router, writing.router, reading.router, social.router,
                             messenger.router, chatadmin.router, twofactor.router, pwa.router, *console.routers,
                             site.fallback]
