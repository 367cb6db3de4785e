"""The installable app: manifest, icons, service worker and offline page, with the right content types and
the strict CSP; the offline page (kept by the service worker) carries nothing personal."""

from __future__ import annotations

import io
import re

from webkit import Station, sign_up


async def test_manifest_icons_service_worker_and_offline_page(station: Station) -> None:
    b = station.browser()
    home = await b.get("/")
    assert '<link rel="manifest" href="/manifest.webmanifest">' in home.text
    manifest = await b.get("/manifest.webmanifest")
    assert manifest.status_code == 200
    assert manifest.headers["content-type"] == "application/manifest+json"
    assert "script-src 'self'" in manifest.headers["content-security-policy"]
    m = manifest.json()
    assert m["display"] == "standalone" and m["start_url"] == "/" and m["scope"] == "/" and m["name"] == "Quark"
    sizes = {(i["sizes"], i["purpose"]) for i in m["icons"]}
    assert {("192x192", "any"), ("512x512", "any"), ("512x512", "maskable")} <= sizes
    from PIL import Image

    for icon in m["icons"]:
        resp = await b.get(icon["src"])
        assert resp.status_code == 200 and resp.headers["content-type"] == "image/png"
        assert "immutable" in resp.headers["cache-control"]
        w, h = Image.open(io.BytesIO(resp.content)).size
        assert f"{w}x{h}" == icon["sizes"]

    sw = await b.get("/sw.js")
    assert sw.status_code == 200 and sw.headers["content-type"] == "text/javascript; charset=utf-8"
    assert sw.headers["cache-control"] == "no-cache" and sw.headers["service-worker-allowed"] == "/"
    csp = sw.headers["content-security-policy"]
    assert "worker-src 'self'" in csp and "unsafe" not in csp
    shell = re.search(r"var SHELL = (\[.*?\]);", sw.text)
    assert shell is not None
    cached = __import__("json").loads(shell.group(1))
    assert "/offline" in cached and any(u.startswith("/static/app.css?v=") for u in cached)
    for url in cached:  # everything the shell caches is served
        assert (await b.get(url)).status_code == 200, url
    # Only static files and the offline page are cached; pages are always fetched.
    assert 'req.mode === "navigate"' in sw.text and "cache.put" not in sw.text

    await sign_up(station, b, "olga", verify=False)
    offline = await b.get("/offline")
    assert offline.status_code == 200 and offline.headers["cache-control"] == "public, max-age=300"
    assert "olga" not in offline.text and "csrf" not in offline.text and "You are offline" in offline.text
    signed_in = await b.get("/explore")
    assert signed_in.headers["cache-control"] == "private, no-store"
    assert 'src="/static/live.js?v=' in signed_in.text and 'data-live="true"' in signed_in.text


async def test_manifest_speaks_the_page_language(station: Station) -> None:
    b = station.browser()
    m = (await b.get("/manifest.webmanifest", headers={"Accept-Language": "ru"})).json()
    assert m["lang"] == "ru" and m["shortcuts"][0]["name"] == "Сообщения"
