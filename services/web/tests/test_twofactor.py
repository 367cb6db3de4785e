"""Two-factor authentication from the settings page, against the real auth module: turn it on (the QR code
is auth's PNG inlined, the secret is shown as text; a wrong code keeps the same enrolment), the recovery
codes are shown once and work, new codes replace the old ones, turning it off needs the password; every
form is refused without the CSRF token."""

from __future__ import annotations

import base64
import re
import time

import pyotp
from webkit import PASSWORD, Browser, Station, sign_up


def secret_of(html: str) -> str:
    m = re.search(r'id="tfa-secret" data-secret="([A-Z2-7]+)"', html)
    assert m is not None, html
    return m.group(1)


def codes_of(html: str) -> list[str]:
    box = re.search(r'<ul class="codes" id="tfa-codes">(.*?)</ul>', html, re.S)
    assert box is not None, html
    return re.findall(r"<code>([A-Z2-7-]+)</code>", box.group(1))


async def sign_in_with(b: Browser, code: str) -> int:
    await b.post("/logout")
    await b.get("/login")
    step = await b.post("/login", {"login": "alice", "password": PASSWORD})
    pending = re.search(r'name="pending" value="([^"]+)"', step.text)
    assert pending is not None, step.text
    return (await b.post("/login/mfa", {"pending": pending.group(1), "code": code})).status_code


async def test_turn_on_use_regenerate_and_turn_off_two_factor(station: Station) -> None:
    b = station.browser()
    await sign_up(station, b, "alice")
    page = await b.get("/settings/security")
    assert page.status_code == 200 and 'data-state="off"' in page.text
    assert (await b.post("/settings/security/2fa/setup", csrf=False)).status_code == 403

    setup = await b.post("/settings/security/2fa/setup")
    assert setup.status_code == 200 and 'data-state="setup"' in setup.text
    assert "no-store" in setup.headers["cache-control"]
    secret = secret_of(setup.text)
    qr = re.search(r'id="tfa-qr" src="data:image/png;base64,([A-Za-z0-9+/=]+)"', setup.text)
    assert qr is not None and base64.b64decode(qr.group(1)).startswith(b"\x89PNG")
    totp = pyotp.TOTP(secret)

    # A wrong code: the same enrolment again (same secret), with the message; 2FA stays off.
    wrong = await b.post("/settings/security/2fa/confirm", {"code": "000000", "secret": secret})
    assert wrong.status_code == 422 and "The code is wrong" in wrong.text and secret_of(wrong.text) == secret
    assert (await b.http.get("/api/v1/web/me")).json()["account"]["mfa_enabled"] is False

    done = await b.post("/settings/security/2fa/confirm", {"code": totp.now(), "secret": secret})
    assert done.status_code == 200 and "no-store" in done.headers["cache-control"]
    first = codes_of(done.text)
    assert len(first) == 10
    assert (await b.http.get("/api/v1/web/me")).json()["account"]["mfa_enabled"] is True
    on = await b.get("/settings/security")
    assert 'data-state="on"' in on.text and first[0] not in on.text  # shown once, never again

    # New recovery codes need the password; the old ones stop working, the new ones sign in.
    bad = await b.post("/settings/security/2fa/recovery-codes", {"password": "not the password"})
    assert bad.status_code == 403 and "The password is not correct." in bad.text
    fresh = codes_of((await b.post("/settings/security/2fa/recovery-codes", {"password": PASSWORD})).text)
    assert len(fresh) == 10 and not set(fresh) & set(first)
    assert await sign_in_with(b, first[1]) == 401
    assert await sign_in_with(b, fresh[0]) == 303
    assert await sign_in_with(b, totp.at(time.time() + 30)) == 303

    # Off: the password again; then signing in asks for no code.
    bad = await b.post("/settings/security/2fa/disable", {"password": "nope"})
    assert bad.status_code == 403 and 'data-state="on"' in bad.text
    off = await b.post("/settings/security/2fa/disable", {"password": PASSWORD})
    assert off.status_code == 303 and off.headers["location"] == "/settings/security"
    page = await b.get("/settings/security")
    assert 'data-state="off"' in page.text and "Two-factor authentication is off." in page.text
    await b.post("/logout")
    await b.get("/login")
    assert (await b.post("/login", {"login": "alice", "password": PASSWORD})).status_code == 303


async def test_security_page_needs_a_session(station: Station) -> None:
    b = station.browser()
    resp = await b.get("/settings/security")
    assert resp.status_code == 303 and resp.headers["location"].startswith("/login?next=/settings/security")
