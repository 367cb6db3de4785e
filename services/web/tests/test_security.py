"""CSRF on every state change, the strict CSP and security headers, the session cookie's flags, and
templates that never need 'unsafe-inline'."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from webkit import PASSWORD, Station, sign_up

from quark_web.pagekit import safe_next

TEMPLATES = Path(__file__).resolve().parents[1] / "quark_web" / "templates"


async def test_a_post_without_a_csrf_token_is_refused_and_changes_nothing(station: Station) -> None:
    b = station.browser()
    await b.get("/register")
    form = {"username": "mallory", "email": "mallory@example.com", "password": PASSWORD}
    no_token = await b.post("/register", form, csrf=False)
    assert no_token.status_code == 403
    assert "expired or did not come from this site" in no_token.text
    wrong = await b.http.post("/register", data={**form, "csrf_token": "0" * 64})
    assert wrong.status_code == 403
    # A token from another browser (another CSRF cookie) does not fit this one.
    other = station.browser()
    await other.get("/register")
    stolen = await b.http.post("/register", data={**form, "csrf_token": other.csrf})
    assert stolen.status_code == 403
    # A cross-site form post (Origin of another site) is refused even with a valid token.
    cross = await b.http.post("/register", data={**form, "csrf_token": b.csrf},
                              headers={"Origin": "https://evil.example"})
    assert cross.status_code == 403
    # No account was created by any of them.
    api = station.api()
    login = await api.post("/api/v1/auth/login", json={"login": "mallory", "password": PASSWORD})
    assert login.status_code == 401
    # A fresh browser without the CSRF cookie cannot post either, even with some token.
    fresh = station.browser()
    assert (await fresh.http.post("/login", data={"login": "x", "password": "y", "csrf_token": b.csrf})
            ).status_code == 403


async def test_htmx_requests_need_the_csrf_header(station: Station) -> None:
    b = station.browser()
    await sign_up(station, b, "alice", verify=False)
    await b.get("/write")
    refused = await b.http.post("/write-preview", data={"body": "# hi"}, headers={"HX-Request": "true"})
    assert refused.status_code == 403 and refused.headers["HX-Retarget"] == "#flash"
    ok = await b.htmx("/write-preview", {"body": "# hi"})
    assert ok.status_code == 200 and "<h1>hi</h1>" in ok.text


async def test_pages_carry_a_strict_csp_and_security_headers(station: Station) -> None:
    b = station.browser()
    for path in ("/", "/login", "/register", "/explore", "/no-such-page", "/static/app.css"):
        resp = await b.get(path)
        csp = resp.headers["content-security-policy"]
        directives = dict(d.strip().split(" ", 1) for d in csp.split(";"))
        assert directives["script-src"] == "'self'", path
        assert directives["style-src"] == "'self'", path
        assert directives["default-src"] == "'self'" and directives["object-src"] == "'none'"
        assert directives["frame-ancestors"] == "'none'" and directives["base-uri"] == "'none'"
        assert "unsafe" not in csp and "nonce-" not in csp
        assert resp.headers["x-content-type-options"] == "nosniff"
        assert resp.headers["x-frame-options"] == "DENY"
        assert resp.headers["referrer-policy"] == "strict-origin-when-cross-origin"
    assert (await b.get("/no-such-page")).status_code == 404


def test_templates_have_no_inline_script_style_or_handlers() -> None:
    """What the CSP forbids never appears: script without src, style elements/attributes, on* handlers."""
    for path in TEMPLATES.rglob("*.html"):
        text = path.read_text()
        for m in re.finditer(r"<script\b([^>]*)>", text):
            assert "src=" in m.group(1), f"inline script in {path.name}"
        assert "<style" not in text, path.name
        assert not re.search(r"\sstyle=", text), path.name
        assert not re.search(r"\son[a-z]+=", text), path.name
        assert "javascript:" not in text, path.name


async def test_session_cookie_is_opaque_httponly_samesite_lax(station: Station) -> None:
    b = station.browser()
    await b.get("/register")
    resp = await b.post("/register", {"username": "bob", "email": "bob@example.com", "password": PASSWORD})
    assert resp.status_code == 303
    cookies = [v for k, v in resp.headers.multi_items() if k == "set-cookie"]
    session = next(c for c in cookies if c.startswith("quark_session="))
    assert "HttpOnly" in session and "SameSite=lax" in session and "Path=/" in session
    assert "Secure" not in session  # env=test: plain http; see the next test for Secure
    value = session.split(";")[0].split("=", 1)[1]
    assert len(value) >= 40 and "." not in value  # random id, not a token
    # The tokens are in Valkey, not in the cookie.
    stored = await station.web.sessions.load(value)
    assert stored is not None and stored.username == "bob" and stored.access_token not in session
    csrf_cookie = next(c for c in cookies if c.startswith("quark_csrf=") or True)
    assert csrf_cookie


async def test_cookies_are_secure_when_configured(quark, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from webkit import start_station

    station = await start_station(quark, tmp_path, with_media=False, web_settings={"cookie_secure": True})
    try:
        b = station.browser()
        resp = await b.http.get("/login")
        cookies = [v for k, v in resp.headers.multi_items() if k == "set-cookie"]
        assert cookies and all("Secure" in c and "HttpOnly" in c for c in cookies)
    finally:
        await station.close()


@pytest.mark.parametrize(("value", "expected"), [
    ("/@alice/post", "/@alice/post"), ("/search?q=x", "/search?q=x"), ("//evil.example/x", "/"),
    ("https://evil.example/", "/"), ("/\\evil.example", "/"), ("", "/"), (None, "/"), ("javascript:alert(1)", "/"),
])
def test_return_paths_stay_on_this_site(value: str | None, expected: str) -> None:
    assert safe_next(value) == expected


async def test_login_redirect_ignores_foreign_next(station: Station) -> None:
    b = station.browser()
    await sign_up(station, b, "carol", verify=False)
    await b.post("/logout")
    await b.get("/login")
    resp = await b.post("/login", {"login": "carol", "password": PASSWORD, "next": "https://evil.example/"})
    assert resp.status_code == 303 and resp.headers["location"] == "/"
