"""The whole journey of issue 18 in two headless Chromium sessions against `quark dev` (the station as
`make run` starts it): Ada registers in the browser, opens the confirmation mail from the dev mailbox and
follows its link, turns on two-factor authentication from the settings page, signs out and back in with a
code, uploads an avatar; Ben follows her (her notification badge turns on without a reload); she writes
and publishes a post with an image, which shows in Ben's home feed; Ben comments and reacts (her badge
counts up live); they chat live (a message and an image appear in the other browser without a reload);
Ada blocks Ben and signs out.

Every page gets axe-core (no serious or critical violation) in light and dark, screenshots at 390x844 and
1280x800 in both themes (services/web/tests/artefacts/, or QUARK_SCREENSHOTS), and a 360 px check: the page
never scrolls sideways on a small phone. Skipped with the reason without Chromium / chromedriver / selenium /
axe (see test_browser.py)."""

from __future__ import annotations

import asyncio
import importlib.util
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from stationkit import PASSWORD, Person, Station, client

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def _web_browser_kit() -> Any:
    """This folder's test_browser.py (its Pages, driver, image and upload helpers), by path."""
    spec = importlib.util.spec_from_file_location("web_test_browser_kit", Path(__file__).with_name("test_browser.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_kit = _web_browser_kit()
PHONE_WIDTH = 360


class Journey(_kit.Pages):  # type: ignore[misc,name-defined]
    """The kit's checks (axe in both themes, screenshots at both sizes) plus: no sideways scrolling at 360 px."""

    def wait_until(self, probe: Any, what: str, timeout: float = 30) -> Any:
        """As the kit's, but a probe that meets the page mid-navigation (stale or not yet there) polls again."""
        from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
        from selenium.webdriver.support.ui import WebDriverWait

        return WebDriverWait(self.d, timeout, poll_frequency=0.1,
                             ignored_exceptions=(NoSuchElementException, StaleElementReferenceException)).until(
            lambda d: probe(), message=what)

    def check(self, name: str) -> None:
        super().check(name)
        self.d.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
            "width": PHONE_WIDTH, "height": 740, "deviceScaleFactor": 1, "mobile": True})
        try:
            self.d.refresh()
            self.wait("footer")
            sizes = self.d.execute_script(
                "return [document.documentElement.scrollWidth, document.documentElement.clientWidth,"
                " window.innerWidth]")
            # A phone widens its layout viewport past the device width when something is wider.
            assert sizes[2] == PHONE_WIDTH and sizes[0] <= sizes[1], (
                f"{name} scrolls sideways at {PHONE_WIDTH} px: {sizes} " + str(self.d.execute_script(_WIDE)))
        finally:
            self.d.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


# The elements wider than the viewport (for the failure message).
_WIDE = """return Array.from(document.querySelectorAll('body *')).filter(function (e) {
  var r = e.getBoundingClientRect(); return r.right > 360 + 1; })
  .slice(0, 5).map(function (e) { return e.tagName + '.' + e.className + '#' + e.id; });"""


@pytest.fixture(scope="module")
def station(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Station]:
    reason = _kit._missing()
    if reason:
        pytest.skip(f"headless browser test {reason}")
    s = Station("embedded", tmp_path_factory.mktemp("web-journey-station"))
    s.start(timeout=240)
    try:
        yield s
    finally:
        s.stop()


def _until(probe: Any, what: str, timeout: float = 60, every: float = 0.5) -> Any:
    """Poll a probe (that may reload a page) until it is truthy, or fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(every)


async def test_the_whole_journey_in_two_browsers(station: Station, tmp_path: Path) -> None:
    base = f"http://127.0.0.1:{station.port}"
    async with client(station) as c:
        ben = await c.register("ben")
        await c.post("/api/v1/auth/verify-email/confirm", json={"token": await station.emailed_token(ben.id)},
                     expect=204)
    image = _kit._image(tmp_path / "aurora.png")
    drivers: list[Any] = []
    try:
        for name in ("ada", "ben"):
            drivers.append(await asyncio.to_thread(_kit._driver, tmp_path / f"profile-{name}"))
        a, b = Journey(drivers[0], base), Journey(drivers[1], base)
        await asyncio.to_thread(_register_and_verify_from_the_mailbox, a)
        totp = await asyncio.to_thread(_turn_on_two_factor, a)
        await asyncio.to_thread(_sign_in_with_a_code, a, totp)
        await asyncio.to_thread(_upload_an_avatar, a, image)
        await asyncio.to_thread(_sign_in, b, ben)
        await asyncio.to_thread(_follow_and_the_badge, a, b, ben)
        post_path = await asyncio.to_thread(_write_and_publish, a, image)
        await asyncio.to_thread(_in_the_followers_feed_comment_react, a, b, post_path)
        await asyncio.to_thread(_chat_live, a, b, image, ben)
        await asyncio.to_thread(_block_and_sign_out, a, b, ben)
    finally:
        for d in drivers:
            await asyncio.to_thread(d.quit)
    assert {"register", "verify", "security-setup", "security-codes", "mfa", "settings", "profile",
            "notifications", "editor", "post", "home", "chats", "chat", "members", "channels", "blocked",
            "login"} <= set(a.checked + b.checked)


def _register_and_verify_from_the_mailbox(a: Journey) -> None:
    a.go("/register")
    a.wait("#f-username")
    a.check("register")
    a.fill("#f-username", "ada")
    a.fill("#f-display_name", "Ada Lovelace")
    a.fill("#f-email", "ada@example.com")
    a.fill("#f-password", PASSWORD)
    a.css("form[action='/register'] button[type=submit]").click()
    a.wait_until(lambda: "Account created" in a.css("#flash").text, "the registered notice")

    # The mail, as a person reads it: the dev mailbox, the newest mail to her, its link.
    from selenium.webdriver.common.by import By

    def mail_link() -> str | None:
        a.go("/dev/mail")
        rows = a.d.find_elements(By.XPATH, "//tr[td[contains(., 'ada@example.com')]]//a[starts-with(@href,"
                                           " '/dev/mail/')]")
        if not rows:
            return None
        rows[0].click()
        links = a.d.find_elements(By.CSS_SELECTOR, "pre a[href*='/verify-email?token=']")
        return str(links[0].get_attribute("href")) if links else None

    try:
        link = _until(mail_link, "the confirmation mail in the dev mailbox")
    except AssertionError:
        raise AssertionError("no confirmation mail; the mailbox shows: " + a.css("body").text[:2000]) from None
    assert link.startswith(a.base + "/verify-email?token="), link
    a.d.get(link)
    a.wait("#verify-confirm").click()
    assert a.wait("#verify-result").get_attribute("data-ok") == "true"
    a.check("verify")


def _turn_on_two_factor(a: Journey) -> Any:
    import pyotp

    a.go("/settings/security")
    a.wait("#tfa-start")
    a.check("security")
    a.css("#tfa-start").click()
    secret = a.wait("#tfa-secret").get_attribute("data-secret")
    qr = a.css("#tfa-qr")
    a.wait_until(lambda: a.d.execute_script("return arguments[0].complete && arguments[0].naturalWidth", qr),
                 "the QR code drawn")
    totp = pyotp.TOTP(secret)
    a.axe("security-setup-light")
    a.checked.append("security-setup")  # a POST answer: axe here, no theme reloads (they would re-POST)
    a.fill("#f-code", totp.now())
    a.css("#tfa-confirm").click()
    codes = a.wait("#tfa-codes")
    assert len(codes.find_elements("css selector", "li")) == 10
    a.axe("security-codes-light")
    a.d.save_screenshot(str(_kit.ARTEFACTS / "security-codes-desktop-light.png"))
    a.checked.append("security-codes")
    return totp


def _sign_in_with_a_code(a: Journey, totp: Any) -> None:
    a.go("/settings/security")
    assert a.wait("#twofactor").get_attribute("data-state") == "on"
    a.css("form[action='/logout'] button").click()
    a.wait("#f-login")
    a.check("login")
    a.fill("#f-login", "ada")
    a.fill("#f-password", PASSWORD)
    a.css("form[action='/login'] button[type=submit]").click()
    a.wait("form[action='/login/mfa']")
    a.axe("mfa-light")
    a.checked.append("mfa")
    a.fill("#f-code", totp.at(time.time() + 30))  # the enrolment used the current step: the next one
    a.css("form[action='/login/mfa'] button[type=submit]").click()
    a.wait("a[href='/@ada']")


def _upload_an_avatar(a: Journey, image: Path) -> None:
    a.go("/settings/profile")
    a.wait("#f-avatar").send_keys(str(image))
    a.css("form[action='/settings/avatar'] button[type=submit]").click()
    a.wait("#flash")

    def shown() -> bool:
        a.go("/settings/profile")
        return bool(a.d.find_elements("css selector", "#avatar-current"))

    _until(shown, "the processed avatar on the settings page")
    img = a.css("#avatar-current")
    a.wait_until(lambda: a.d.execute_script("return arguments[0].complete && arguments[0].naturalWidth", img),
                 "the avatar image loaded")
    a.check("settings")


def _sign_in(p: Journey, person: Person) -> None:
    p.go("/login")
    p.wait("#f-login")
    p.fill("#f-login", person.username)
    p.fill("#f-password", PASSWORD)
    p.css("form[action='/login'] button[type=submit]").click()
    p.wait(f"a[href='/@{person.username}']")


def _socket_open(p: Journey) -> None:
    p.wait_until(lambda: p.css("body").get_attribute("data-socket") == "open", "the live socket open")


def _notes(p: Journey) -> int:
    """The notification badge's count, read in one script: the live swap replaces the badge element, and
    reading it through two WebDriver calls could meet a node that had just left the document."""
    count = p.d.execute_script(
        "const b = document.getElementById('badge-notes');"
        "return b === null || b.hidden ? 0 : Number(b.dataset.count || 0);")
    return int(count)


def _badges_loaded(p: Journey) -> None:
    """The page's first /badges answer has replaced the placeholders (it carries only the 60 s poll)."""
    p.wait_until(lambda: p.css("#badge-messages").get_attribute("hx-trigger") == "every 60s", "the badges loaded")


def _follow_and_the_badge(a: Journey, b: Journey, ben: Person) -> None:
    a.go("/explore")
    _socket_open(a)
    _badges_loaded(a)
    a.d.execute_script("document.body.dataset.marker = 'no-reload'")
    b.go("/people/ada")
    b.wait("#actions")
    assert b.d.find_elements("css selector", "img.avatar"), "Ada's avatar on her profile"
    b.check("profile")
    b.css("button[data-action=follow]").click()
    b.wait("button[data-action=unfollow]")
    a.wait_until(lambda: _notes(a) >= 1, "Ada's notification badge, live")
    assert a.css("body").get_attribute("data-marker") == "no-reload"
    a.go("/notifications")
    a.wait("#notes")
    assert f"@{ben.username} started following you" in a.css("#notes").text
    a.check("notifications")
    a.css("form[action='/notifications/read-all'] button").click()
    a.wait_until(lambda: "marked as read" in a.css("#flash").text, "all notifications read")


def _write_and_publish(a: Journey, image: Path) -> str:
    a.go("/write")
    a.wait("#f-body")
    a.fill("#f-title", "Aurora over the fjord")
    a.fill("#f-body", "Green *curtains* over **dark** water.\n")
    _kit._upload(a, image)
    a.fill("#f-tags", "sky, north")
    a.axe("editor-light")
    a.checked.append("editor")
    a.css("button[value=publish]").click()
    a.wait("article.post")
    path = a.d.current_url.removeprefix(a.base)
    assert path == "/@ada/aurora-over-the-fjord", path
    img = a.css(".prose img")
    a.wait_until(lambda: a.d.execute_script("return arguments[0].complete && arguments[0].naturalWidth", img),
                 "the image in the post")
    return path


def _in_the_followers_feed_comment_react(a: Journey, b: Journey, post_path: str) -> None:
    def in_feed() -> bool:
        b.go("/")
        return bool(b.d.find_elements("css selector", "#feed")) and "Aurora over the fjord" in b.css("#feed").text

    _until(in_feed, "Ada's post in Ben's home feed")
    b.check("home")
    a.go(post_path)
    a.wait("article.post")
    _socket_open(a)
    _badges_loaded(a)
    before = _notes(a)
    b.go(post_path)
    b.wait("#comment-body")
    b.fill("#comment-body", "Beautiful colours!")
    b.css("#comment-form button[type=submit]").click()
    b.wait_until(lambda: "Beautiful colours!" in b.css("#comments").text, "the comment")
    b.css("button[data-kind=like]").click()
    b.wait_until(lambda: b.css("button[data-kind=like]").get_attribute("aria-pressed") == "true", "the reaction")
    b.check("post")
    a.wait_until(lambda: _notes(a) > before, "Ada's badge counting the comment, live")


def _chat_live(a: Journey, b: Journey, image: Path, ben: Person) -> None:
    b.go("/messages")
    b.wait("#f-dm")
    b.check("chats")
    b.fill("#f-dm", "ada")
    b.css("form[aria-labelledby=new-direct] button[type=submit]").click()
    b.wait("#compose")
    chat_path = b.d.current_url.removeprefix(b.base)
    _socket_open(b)
    a.go(chat_path)
    a.wait("#compose")
    _socket_open(a)
    a.d.execute_script("document.body.dataset.marker = 'no-reload'")
    b.fill("#f-message", "Your aurora is wonderful")
    b.css("#compose button[type=submit]").click()
    a.wait_until(lambda: "Your aurora is wonderful" in a.css("#messages").text, "Ben's message live at Ada's")
    b.wait_until(lambda: b.css("#messages li.msg.mine .receipt").get_attribute("data-read") == "true",
                 "the read receipt")
    # Ada answers with an image: through media, shown live in Ben's page once processed.
    b.d.execute_script("document.body.dataset.marker = 'no-reload'")
    a.fill("#f-message", "Another one from last night")
    a.css("#f-attach").send_keys(str(image))
    a.css("#compose button[type=submit]").click()
    b.wait_until(lambda: b.d.find_elements("css selector", "#messages img.attachment"), "the image live at Ben's")
    img = b.css("#messages img.attachment")
    b.wait_until(lambda: b.d.execute_script("return arguments[0].complete && arguments[0].naturalWidth", img),
                 "the attachment loaded", timeout=60)
    assert b.css("body").get_attribute("data-marker") == "no-reload"
    assert a.css("body").get_attribute("data-marker") == "no-reload"
    b.check("chat")
    # A group and the channels page, for their checks.
    a.go("/messages")
    a.wait("#f-gtitle")
    a.fill("#f-gtitle", "Northern lights club")
    a.fill("#f-gmembers", ben.username)
    a.css("form[aria-labelledby=new-group] button[type=submit]").click()
    a.wait("#chat-members").click()
    a.wait("#members")
    assert f"@{ben.username}" in a.css("#members").text
    a.check("members")
    a.go("/channels")
    a.wait("#f-ctitle")
    a.check("channels")


def _block_and_sign_out(a: Journey, b: Journey, ben: Person) -> None:
    a.go(f"/people/{ben.username}")
    a.wait("button[data-action=block]").click()
    a.wait("button[data-action=unblock]")
    a.go("/settings/blocked")
    a.wait("main h1")
    assert f"@{ben.username}" in a.css("main").text
    a.check("blocked")
    b.go("/people/ada")
    b.wait("main h1")
    assert not b.d.find_elements("css selector", "button[data-action=follow]")
    a.css("form[action='/logout'] button").click()
    a.wait("#f-login")
    assert "You are signed out." in a.css("#flash").text
    a.go("/settings/profile")
    a.wait("#f-login")  # signed out: the settings ask for a sign-in
