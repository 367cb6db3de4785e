"""The console in a real browser (headless Debian Chromium, Selenium, axe-core): an admin suspends and reinstates
an account and forces a password reset; an operator finds an event dead-lettered by a broken trigger, fixes the
cause, replays it from the console and the consumer applies it once.

The station is the in-process one of test_console_admin.py (auth, user, blog, AI, the hub and web on this
test's PostgreSQL, Valkey and NATS), served over real HTTP by uvicorn for the browser. Every page is checked
with axe (no serious or critical violations); its screenshot goes to docs/console/<page>.png.

Skipped with the reason when Chromium, chromedriver, selenium or axe-selenium-python is missing.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from sqlalchemy import text
from test_console_admin import console as console  # the station fixture
from test_console_admin import make_admin
from webkit import PASSWORD, Station, sign_up, wait_profile

from quark_sdk.embedded import free_port
from quark_sdk.testing import eventually

pytestmark = [pytest.mark.browser, pytest.mark.slow]
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--hide-scrollbars"]


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
# Screenshots are artefacts of every run; docs/console/ is refreshed on request (QUARK_DOC_SCREENSHOTS=1), so a test
# run never leaves the checkout modified.
SHOTS = (Path(__file__).resolve().parents[3] / "docs" / "console" if os.environ.get("QUARK_DOC_SCREENSHOTS") == "1"
         else Path(__file__).resolve().parent / "artefacts" / "console")
__all__ = ["console"]


@pytest.fixture
async def served(console: Station) -> AsyncIterator[str]:
    reason = _missing()
    if reason:
        pytest.skip(f"headless browser test {reason}")
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(console.gateway, host="127.0.0.1", port=port, lifespan="off",
                                           log_level="warning"))
    task = asyncio.create_task(server.serve())
    await eventually(lambda: server.started, what="uvicorn serving the station")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, 10)


def _driver(profile: Path) -> Any:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    real = Path("/usr/lib/chromium/chromium")
    options.binary_location = str(real if real.exists() else CHROMIUM)
    for flag in [*FLAGS, f"--user-data-dir={profile}", "--window-size=1280,900"]:
        options.add_argument(flag)
    return webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))


class Console:
    def __init__(self, driver: Any, base: str) -> None:
        self.d, self.base = driver, base

    def go(self, path: str) -> None:
        self.d.get(self.base + path)

    def css(self, selector: str) -> Any:
        from selenium.webdriver.common.by import By

        return self.d.find_element(By.CSS_SELECTOR, selector)

    def wait_until(self, probe: Any, what: str, timeout: float = 30) -> Any:
        from selenium.common.exceptions import TimeoutException, WebDriverException
        from selenium.webdriver.support.ui import WebDriverWait

        def safe(_: Any) -> Any:
            try:
                return probe()
            except WebDriverException:  # the page is being replaced
                return None

        try:
            return WebDriverWait(self.d, timeout, poll_frequency=0.1).until(safe)
        except TimeoutException:
            raise AssertionError(f"{what}; the page is {self.d.current_url}: "
                                 f"{self.css('main').text[:500]!r}") from None

    def wait(self, selector: str) -> Any:
        def present() -> Any:
            try:
                return self.css(selector)
            except Exception:
                return None

        return self.wait_until(present, f"{selector} never appeared")

    def fill(self, selector: str, value: str) -> None:
        el = self.css(selector)
        el.clear()
        el.send_keys(value)

    def sign_in(self, login: str) -> None:
        with contextlib.suppress(Exception):
            self.css("form[action='/logout'] button").click()
            self.wait("#f-login")
        self.go("/login")
        self.fill("#f-login", login)
        self.fill("#f-password", PASSWORD)
        self.css("form[action='/login'] button[type=submit]").click()
        # The login page has a footer too: wait for the signed-in person's own link, or the next
        # navigation races the login's redirect (CI landed on the feed instead of the console).
        self.wait(f"a[href='/@{login}']")

    def check(self, name: str) -> None:
        """axe-core (no serious or critical violation) and the page's screenshot for docs/console/."""
        from axe_selenium_python import Axe

        axe = Axe(self.d)
        axe.inject()
        results = axe.run()
        assert len(results["passes"]) > 10, "axe did not run its rules"
        bad = [v for v in results["violations"] if v.get("impact") in ("serious", "critical")]
        assert bad == [], f"{name}: " + "; ".join(
            f"{v['id']} ({v['impact']}): {[n['target'] for n in v['nodes']][:3]}" for v in bad)
        SHOTS.mkdir(parents=True, exist_ok=True)
        self.d.execute_script("window.scrollTo(0, 0)")
        self.d.save_screenshot(str(SHOTS / f"{name}.png"))


def _admin_journey(c: Console, uid: str) -> None:
    c.sign_in("root")
    c.go("/console/users?q=mallory")
    c.wait("#users")
    c.check("users-search")
    c.css("tr[data-user='mallory'] a").click()
    c.wait("#suspend-form")
    c.check("users-detail")
    c.fill("#f-suspend-reason", "spam wave")
    c.css("#suspend-form button").click()
    c.wait_until(lambda: "spam wave" in c.css("#state").text, "the suspension on the account page")
    assert "The account is suspended." in c.css("#flash").text
    c.check("users-suspended")
    c.css("#unsuspend-form button").click()
    c.wait("#suspend-form")
    assert "The account is reinstated." in c.css("#flash").text
    c.fill("#f-reset-reason", "credential stuffing")
    c.css("#reset-form button").click()
    c.wait("#reset-required")
    assert c.css("#active-sessions").text == "0"
    c.check("users-reset-forced")
    c.go("/console/ai")
    c.wait("#thresholds-form")
    c.check("ai")


def _operator_finds(c: Console) -> str:
    c.sign_in("ops")
    c.go("/console/operator")
    c.wait("[data-module='user']")
    c.check("operator-modules")
    c.go("/console/operator/infra")
    c.wait("#streams")
    c.check("operator-infra")
    c.go("/console/operator/logs?module=user&level=ERROR")
    c.wait("#log-records")
    assert "broken migration" in c.css("#log-records").text
    c.check("operator-logs")
    c.go("/console/operator/dead-letters")
    c.wait("#dead-letters")
    c.check("operator-dead-letters")
    from selenium.webdriver.common.by import By

    rows = c.d.find_elements(By.CSS_SELECTOR, "#dead-letters tbody tr")
    row = next(r for r in rows if "quark.auth.user_registered" in r.text)
    seq = str(row.get_attribute("data-seq"))
    row.find_element(By.CSS_SELECTOR, "a").click()
    c.wait("#replay-form")
    assert "broken migration" in c.css("#dl-error").text
    c.check("operator-dead-letter")
    return seq


def _operator_replays(c: Console, seq: str) -> None:
    c.fill("#f-replay-reason", "trigger fixed")
    c.css("#replay-form button").click()
    c.wait_until(lambda: "The event is replayed" in c.css("#flash").text, "the replay notice")
    assert f'data-seq="{seq}"' not in c.d.page_source


async def test_admin_and_operator_in_the_browser(console: Station, served: str, tmp_path: Path) -> None:
    await make_admin(console, "root")
    await make_admin(console, "ops", "operator")
    victim = console.browser()
    uid = await sign_up(console, victim, "mallory")
    await wait_profile(console, "mallory")
    # The cause of the dead letter: a broken trigger in the user service's database refuses carol's profile.
    user_db = console.ctx("user").database()
    async with user_db.session() as session, session.begin():
        await session.execute(text(
            "CREATE FUNCTION refuse_carol() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            "IF NEW.username = 'carol' THEN RAISE EXCEPTION 'broken migration'; END IF; RETURN NEW; END $$"))
        await session.execute(text("CREATE TRIGGER refuse_carol BEFORE INSERT ON profiles "
                                   "FOR EACH ROW EXECUTE FUNCTION refuse_carol()"))
    carol_id = await sign_up(console, console.browser(), "carol", verify=False)

    driver = await asyncio.to_thread(_driver, tmp_path / "chromium-profile")
    c = Console(driver, served)
    try:
        await asyncio.to_thread(_admin_journey, c, uid)
        hub_api = console.api()

        async def dead_lettered() -> bool:
            token = (await hub_api.post("/api/v1/auth/login", json={"login": "ops", "password": PASSWORD})).json()
            listing = (await hub_api.get("/api/v1/hub/operator/dead-letters", headers={
                "Authorization": f"Bearer {token['access_token']}"})).json()
            return any(i["event_type"] == "quark.auth.user_registered" for i in listing["items"])

        await eventually(dead_lettered, timeout=60, what="carol's registration dead-lettered")
        seq = await asyncio.to_thread(_operator_finds, c)
        async with user_db.session() as session, session.begin():
            await session.execute(text("DROP TRIGGER refuse_carol ON profiles"))
        await asyncio.to_thread(_operator_replays, c, seq)
    finally:
        await asyncio.to_thread(driver.quit)
    await wait_profile(console, "carol")
    async with user_db.session() as session:
        profiles = (await session.execute(text("SELECT count(*) FROM profiles WHERE user_id = :u"),
                                          {"u": carol_id})).scalar()
    assert profiles == 1
    for name in ("users-detail", "users-reset-forced", "operator-dead-letter", "operator-infra", "ai"):
        assert (SHOTS / f"{name}.png").stat().st_size > 10_000
