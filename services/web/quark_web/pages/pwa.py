"""The installable app: the web app manifest, the service worker (an offline shell) and the offline page.

The service worker caches only what is the same for everybody: the stylesheet, the scripts, the icons
(content-hashed URLs, so a deploy is a new cache) and the offline page. Navigations always go to the
network (signed-in HTML is never cached: `Cache-Control: private, no-store` on every page); when the
network is gone the cached offline page answers instead.
"""

from __future__ import annotations

import hashlib
import json

from fastapi import APIRouter, Request, Response

from quark_web.pagekit import ENV, WebRoute, page_of

router = APIRouter(route_class=WebRoute, include_in_schema=False)
SHELL_ASSETS = ("app.css", "htmx.min.js", "app.js", "live.js", "pwa.js", "icon-192.png")
ICONS = ((192, "icon-192.png", "any"), (512, "icon-512.png", "any"), (512, "icon-maskable-512.png", "maskable"))


@router.get("/manifest.webmanifest")
async def manifest(request: Request) -> Response:
    page = page_of(request)
    _ = page.context()["_"]
    body = {
        "name": "Quark", "short_name": "Quark", "description": _("Quark: blogs and conversations."),
        "id": "/", "start_url": "/", "scope": "/", "display": "standalone", "lang": page.lang,
        "background_color": "#ffffff", "theme_color": "#0a58ca",
        "icons": [{"src": page.rt.assets.url(name), "sizes": f"{size}x{size}", "type": "image/png", "purpose": purpose}
                  for size, name, purpose in ICONS],
        "shortcuts": [{"name": _("Messages"), "url": "/messages"}, {"name": _("Write"), "url": "/write"}],
    }
    return Response(json.dumps(body, ensure_ascii=False), media_type="application/manifest+json",
                    headers={"Cache-Control": "public, max-age=3600"})


@router.get("/sw.js")
async def service_worker(request: Request) -> Response:
    page = page_of(request)
    shell = ["/offline", *(page.rt.assets.url(name) for name in SHELL_ASSETS if name in page.rt.assets.files)]
    version = hashlib.sha256("\n".join(shell).encode()).hexdigest()[:12]
    body = ENV.get_template("pwa/sw.js").render(version=version, shell=json.dumps(shell))
    return Response(body, media_type="text/javascript; charset=utf-8",
                    headers={"Cache-Control": "no-cache", "Service-Worker-Allowed": "/"})


@router.get("/offline")
async def offline(request: Request) -> Response:
    """The same for everybody (no name, no CSRF token): safe for the service worker to keep."""
    page = page_of(request)
    _ = page.context()["_"]
    html = ENV.get_template("pwa/offline.html").render(_=_, lang=page.lang, asset=page.rt.assets.url)
    return Response(html, media_type="text/html; charset=utf-8", headers={"Cache-Control": "public, max-age=300"})
