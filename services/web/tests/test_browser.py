"""The web client in a real browser: headless Debian Chromium driven by Selenium against a whole station
started as `make run` starts it (`quark dev`, every installed module in one process, real servers).

Journey: register -> confirm the email (the token from `quark.auth.email_requested` on NATS, as the mailer
gets it) -> sign out and in -> write a post with an image (upload with progress, thumbnail) -> see it ->
comment -> react. Every page is checked with axe-core (bundled in axe-selenium-python; no download): no
serious or critical violations. Screenshots of each page at 390x844 and 1280x800, light and dark, go to
services/web/tests/artefacts/ (gitignored; QUARK_SCREENSHOTS=<dir> to put them elsewhere).

Skipped with the reason when Chromium, chromedriver, selenium or axe-selenium-python is missing
(`apt-get install chromium chromium-driver`; `make install` brings the Python packages).
"""

from __future__ import annotations

import asyncio
import io
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from stationkit import PASSWORD, Station

REPO = Path(__file__).resolve().parents[3]

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--hide-scrollbars"]
SIZES = {"phone": (390, 844), "desktop": (1280, 800)}
ARTEFACTS = Path(os.environ.get("QUARK_SCREENSHOTS") or Path(__file__).parent / "artefacts")


def _missing() -> str | None:
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not Path(p).exists()]
    if missing:
        return f"needs {' and '.join(missing)} (apt-get install chromium chromium-driver)"
    for module in ("selenium", "axe_selenium_python"):
        try:
            __import__(module)
        except ImportError:
            return f"needs the Python package {module} (make install)"
    return None


@pytest.fixture(scope="module")
def station(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Station]:
    reason = _missing()
    if reason:
        pytest.skip(f"headless browser test {reason}")
    s = Station("embedded", tmp_path_factory.mktemp("web-station"))
    s.start(timeout=180)
    try:
        yield s
    finally:
        s.stop()


def _driver(profile: Path) -> Any:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    real = Path("/usr/lib/chromium/chromium")  # the Debian launcher script wraps the real binary
    options.binary_location = str(real if real.exists() else CHROMIUM)
    for flag in [*FLAGS, f"--user-data-dir={profile}", "--window-size=1280,800"]:
        options.add_argument(flag)
    return webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))


class Pages:
    """The browser plus the checks every page gets (axe, screenshots)."""

    def __init__(self, driver: Any, base: str) -> None:
        self.d = driver
        self.base = base
        self.checked: list[str] = []

    def go(self, path: str) -> None:
        self.d.get(self.base + path)

    def wait(self, css: str, timeout: float = 30) -> Any:
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support import expected_conditions as ec
        from selenium.webdriver.support.ui import WebDriverWait

        return WebDriverWait(self.d, timeout, poll_frequency=0.1).until(
            ec.presence_of_element_located((By.CSS_SELECTOR, css)), message=f"{css} never appeared")

    def wait_until(self, probe: Any, what: str, timeout: float = 30) -> Any:
        """Poll `probe`; one that meets the page mid-navigation (an element gone stale or not there yet)
        polls again, as after a form submit the old page's elements go stale while the new one loads."""
        from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
        from selenium.webdriver.support.ui import WebDriverWait

        return WebDriverWait(self.d, timeout, poll_frequency=0.1,
                             ignored_exceptions=(NoSuchElementException, StaleElementReferenceException)).until(
            lambda d: probe(), message=what)

    def css(self, selector: str) -> Any:
        from selenium.webdriver.common.by import By

        return self.d.find_element(By.CSS_SELECTOR, selector)

    def fill(self, selector: str, text: str) -> None:
        el = self.css(selector)
        el.clear()
        el.send_keys(text)

    def axe(self, name: str) -> None:
        from axe_selenium_python import Axe

        axe = Axe(self.d)
        axe.inject()
        results = axe.run()
        assert len(results["passes"]) > 10, "axe did not run its rules"
        bad = [v for v in results["violations"] if v.get("impact") in ("serious", "critical")]
        ARTEFACTS.mkdir(parents=True, exist_ok=True)
        (ARTEFACTS / f"axe-{name}.json").write_text(json.dumps(results["violations"], indent=1))
        assert bad == [], f"{name}: " + "; ".join(
            f"{v['id']} ({v['impact']}): {[n['target'] for n in v['nodes']][:3]}" for v in bad)

    def check(self, name: str) -> None:
        """axe in light and dark, and screenshots at both sizes in both themes; the page stays as it was."""
        path = self.d.current_url.removeprefix(self.base)
        ARTEFACTS.mkdir(parents=True, exist_ok=True)
        for theme in ("light", "dark"):
            self.go(f"/theme?to={theme}&next={_quote(path)}")
            self.wait("footer")
            assert self.css("html").get_attribute("data-theme") == theme
            for label, (w, h) in SIZES.items():
                self.d.set_window_size(w, h)
                self.d.save_screenshot(str(ARTEFACTS / f"{name}-{label}-{theme}.png"))
            self.d.set_window_size(*SIZES["desktop"])
            self.axe(f"{name}-{theme}")
        self.go(f"/theme?to=&next={_quote(path)}")
        self.wait("footer")
        self.checked.append(name)


def _quote(path: str) -> str:
    from urllib.parse import quote

    return quote(path, safe="")


def _image(path: Path) -> Path:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (640, 400), (30, 110, 200)).save(buf, "PNG")
    path.write_bytes(buf.getvalue())
    return path


async def test_register_verify_write_with_image_comment_react(station: Station, tmp_path: Path) -> None:
    base = f"http://127.0.0.1:{station.port}"
    driver = await asyncio.to_thread(_driver, tmp_path / "chromium-profile")
    p = Pages(driver, base)
    try:
        await asyncio.to_thread(_anonymous_pages, p)
        await asyncio.to_thread(_register, p)
        user_id = await asyncio.to_thread(_my_id, p)
        token = await station.emailed_token(user_id)
        await asyncio.to_thread(_verify_and_sign_in_again, p, token)
        await asyncio.to_thread(_write_with_image, p, _image(tmp_path / "sky.png"))
        await asyncio.to_thread(_comment_and_react, p)
    finally:
        await asyncio.to_thread(driver.quit)
    assert {"home-anonymous", "register", "verify", "login", "editor", "post", "drafts", "search"} <= set(p.checked)


def _anonymous_pages(p: Pages) -> None:
    p.go("/")
    p.wait("main h1")
    assert p.d.title == "Welcome to Quark · Quark"
    p.check("home-anonymous")
    p.go("/search?q=nothing")
    p.wait("main h1")
    p.check("search")


def _register(p: Pages) -> None:
    p.go("/register")
    p.wait("#f-username")
    p.check("register")
    p.fill("#f-username", "selma")
    p.fill("#f-display_name", "Selma Lagerlöf")
    p.fill("#f-email", "selma@example.com")
    p.fill("#f-password", PASSWORD)
    p.css("form[action='/register'] button[type=submit]").click()
    p.wait_until(lambda: "Account created" in p.css("#flash").text, "the registered notice")
    assert p.css("a[href='/@selma']").text == "@selma"


def _my_id(p: Pages) -> str:
    p.go("/api/v1/web/me")
    body = json.loads(p.css("body").text)
    assert body["account"]["username"] == "selma" and body["account"]["email_verified"] is False
    return str(body["account"]["id"])


def _verify_and_sign_in_again(p: Pages, token: str) -> None:
    p.go(f"/verify-email?token={token}")
    p.check("verify-form")
    p.css("#verify-confirm").click()
    assert p.wait("#verify-result").get_attribute("data-ok") == "true"
    p.check("verify")
    p.css("form[action='/logout'] button").click()
    p.wait("#f-login")
    assert "You are signed out." in p.css("#flash").text
    p.check("login")
    p.fill("#f-login", "selma")
    p.fill("#f-password", PASSWORD)
    p.css("form[action='/login'] button[type=submit]").click()
    p.wait("a[href='/@selma']")
    p.go("/api/v1/web/me")
    assert json.loads(p.css("body").text)["account"]["email_verified"] is True


def _write_with_image(p: Pages, image: Path) -> None:
    p.go("/write")
    p.wait("#f-body")
    p.fill("#f-title", "Northern light")
    p.fill("#f-body", "A *cold* and **clear** evening.\n")
    p.wait_until(lambda: "<strong>clear</strong>" in p.css("#preview").get_attribute("innerHTML"),
                 "the live preview (rendered by the blog)")
    _upload(p, image)
    assert p.css("#upload-progress").get_attribute("value") == "100"
    assert "/variants/medium" in p.css("#f-body").get_attribute("value")
    assert p.css("input[name=media_ids]").get_attribute("value")
    p.wait_until(lambda: "<img" in p.css("#preview").get_attribute("innerHTML"), "the image in the preview")
    p.fill("#f-tags", "sky, evening")
    p.check("editor")
    p.go("/drafts")
    p.wait("main h1")
    p.check("drafts")
    p.d.back()
    # The editor again (the checks navigated away): write and publish for real.
    p.go("/write")
    p.wait("#f-body")
    p.fill("#f-title", "Northern light")
    p.fill("#f-body", "A *cold* and **clear** evening.\n")
    _upload(p, image)
    p.fill("#f-tags", "sky, evening")
    p.css("button[value=publish]").click()
    p.wait("article.post")
    assert p.d.current_url == p.base + "/@selma/northern-light"
    assert p.css("article.post h1").text == "Northern light"
    img = p.css(".prose img")
    p.wait_until(lambda: p.d.execute_script("return arguments[0].complete && arguments[0].naturalWidth", img),
                 "the image loaded in the post")
    og = p.css("meta[property='og:image']").get_attribute("content")
    assert og.startswith(p.base + "/api/v1/media/") and og.endswith("/variants/medium")


def _upload(p: Pages, image: Path) -> None:
    from selenium.common.exceptions import TimeoutException

    p.css("#f-image").send_keys(str(image))
    try:
        p.wait("#thumbs img", timeout=60)
    except TimeoutException:
        raise AssertionError(f"no thumbnail; the editor says: {p.css('#upload-status').text!r}") from None


def _comment_and_react(p: Pages) -> None:
    p.fill("#comment-body", "What a sky!")
    p.css("#comment-form button[type=submit]").click()
    p.wait_until(lambda: "What a sky!" in p.css("#comments").text, "the comment (HTMX, no reload)")
    like = p.css("button[data-kind=like]")
    assert like.get_attribute("aria-pressed") == "false"
    like.click()
    p.wait_until(lambda: p.css("button[data-kind=like]").get_attribute("aria-pressed") == "true", "the reaction")
    assert p.css("button[data-kind=like]").text.strip().endswith("1")
    p.check("post")
    p.go("/")
    p.wait("article.post-card")
    assert "Northern light" in p.css("#feed").text
    p.check("home")
