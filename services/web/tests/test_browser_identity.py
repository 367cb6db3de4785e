"""The identities beyond email in a real browser (headless Chromium + Selenium) against a whole station started
as `make run` starts it (`quark dev`): registration by phone with the code read from the dev SMS sink
(`/dev/sms` of the mailer, the `dev` SMS driver), then sign-in through the local OpenID Connect provider of the
auth tests (a real HTTP server the browser visits: its consent page, then back to the station), choosing the
username at the first sign-in. Pages checked with axe like test_browser.py.

Skipped with the reason when Chromium, chromedriver, selenium or axe-selenium-python is missing.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import stationkit
from oidc_provider import CLIENT_SECRET, LocalOidcProvider
from stationkit import PASSWORD, Station


def _web_browser_kit() -> Any:
    """The web client's test_browser.py (its Pages, driver and skip checks); loaded by path, as plugin-hub
    has a test_browser module of its own."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("web_test_browser", Path(__file__).with_name("test_browser.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_kit = _web_browser_kit()
Pages, _driver, _missing = _kit.Pages, _kit._driver, _kit._missing

pytestmark = [pytest.mark.browser, pytest.mark.slow]
PHONE = "+447911123456"


@pytest.fixture(scope="module")
def provider() -> Iterator[LocalOidcProvider]:
    local = LocalOidcProvider(consent=True).start()
    yield local
    local.stop()


@pytest.fixture(scope="module")
def station(tmp_path_factory: pytest.TempPathFactory, provider: LocalOidcProvider) -> Iterator[Station]:
    reason = _missing()
    if reason:
        pytest.skip(f"headless browser test {reason}")
    s = Station("embedded", tmp_path_factory.mktemp("identity-station"))
    extra = {
        "QUARK_AUTH_OIDC_PROVIDERS": json.dumps(provider.settings()),
        "QUARK_AUTH_APP_URL": s.base,
        "QUARK_SECRET_AUTH_OIDC_LOCAL": json.dumps({"client_secret": CLIENT_SECRET}),
        "QUARK_AUTH_SMS_BACKOFF_BASE": "0",
    }
    saved = dict(stationkit.STATION_ENV)
    stationkit.STATION_ENV.update(extra)
    try:
        s.start(timeout=180)
    finally:
        stationkit.STATION_ENV.clear()
        stationkit.STATION_ENV.update(saved)
    try:
        yield s
    finally:
        s.stop()


def _code_from_dev_sms(station: Station, phone: str) -> str:
    """The newest code to `phone` on the dev SMS page (as a developer reads it)."""
    page = httpx.get(station.base + "/dev/sms", timeout=10)
    assert page.status_code == 200, page.text[:300]
    for row in re.findall(r'<tr class="sms">(.*?)</tr>', page.text, re.S):
        if phone in row:
            match = re.search(r"\b(\d{6})\b", row)
            if match:
                return match.group(1)
    return ""


def test_register_by_phone_then_sign_in_with_the_provider(station: Station, tmp_path: Any) -> None:
    driver = _driver(tmp_path / "profile")
    p = Pages(driver, station.base)
    try:
        p.go("/register")
        p.wait("#f-phone")
        p.fill("#f-username", "phoebe")
        p.fill("#f-phone", "+44 7911 123456")
        p.fill("#f-password", PASSWORD)
        p.css("form[action='/register'] button[type=submit]").click()
        p.wait("form[action='/register/phone/confirm']")
        p.axe("phone-code")  # (check() would reload the page: it answers a POST)
        code = p.wait_until(lambda: _code_from_dev_sms(station, PHONE), "the SMS in the dev sink", timeout=60)
        p.fill("#f-code", code)
        p.css("form[action='/register/phone/confirm'] button[type=submit]").click()
        p.wait("form[action='/logout']")
        p.go("/settings/sessions")
        assert p.wait("[data-phone]").text == PHONE
        p.css("form[action='/logout'] button").click()

        p.go("/login")
        p.wait("a[data-provider='local']").click()
        p.wait("#approve").click()  # the provider's own page, on its own origin
        p.wait("form[action='/login/oidc/signup']")
        assert p.css("#f-username").get_attribute("value") == "jane"
        p.axe("provider-signup")  # (reloading would replay the spent state)
        p.fill("#f-username", "jane_doe")
        p.css("form[action='/login/oidc/signup'] button[type=submit]").click()
        p.wait("form[action='/logout']")
        p.go("/settings/sessions")
        p.wait("form[action='/settings/providers/local/unlink']")
    finally:
        driver.quit()
