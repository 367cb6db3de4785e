"""Two people chat live in two headless Chromium sessions against `quark dev` (the whole station in one
process): the message appears in the other browser without a reload (through the web module's socket
proxy, authenticated by a one-time ticket), the typing indicator and the read receipt show, and the
follow turns the notification badge on. axe-core finds no serious or critical violation on the social
and messenger pages. Skipped with the reason without Chromium / chromedriver / selenium / axe."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from stationkit import PASSWORD, Person, Station, client


def _web_browser_kit() -> Any:
    """This folder's test_browser.py (its Pages, driver and skip reason), by path: the name is not unique."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("web_test_browser", Path(__file__).with_name("test_browser.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_kit = _web_browser_kit()
Pages, _driver, _missing = _kit.Pages, _kit._driver, _kit._missing

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture(scope="module")
def station(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Station]:
    reason = _missing()
    if reason:
        pytest.skip(f"headless browser test {reason}")
    s = Station("embedded", tmp_path_factory.mktemp("web-chat-station"))
    s.start(timeout=180)
    try:
        yield s
    finally:
        s.stop()


async def _verified(station: Station, name: str) -> Person:
    async with client(station) as c:
        person = await c.register(name)
        token = await station.emailed_token(person.id)
        await c.post("/api/v1/auth/verify-email/confirm", json={"token": token}, expect=204)
        await c.login(person)
    return person


def _sign_in(p: Any, person: Person) -> None:
    p.go("/login")
    p.wait("#f-login")
    p.fill("#f-login", person.username)
    p.fill("#f-password", PASSWORD)
    p.css("form[action='/login'] button[type=submit]").click()
    p.wait(f"a[href='/@{person.username}']")


def _socket_open(p: Any) -> None:
    p.wait_until(lambda: p.css("body").get_attribute("data-socket") == "open", "the live socket open")


async def test_two_browsers_chat_live(station: Station, tmp_path: Path) -> None:
    ada, ben = await _verified(station, "ada"), await _verified(station, "ben")
    base = f"http://127.0.0.1:{station.port}"
    drivers: list[Any] = []
    try:
        for name in ("a", "b"):
            drivers.append(await asyncio.to_thread(_driver, tmp_path / f"profile-{name}"))
        a, b = Pages(drivers[0], base), Pages(drivers[1], base)
        await asyncio.to_thread(_sign_in, a, ada)
        await asyncio.to_thread(_sign_in, b, ben)
        await asyncio.to_thread(_ben_follows_and_ada_sees_the_badge, a, b, ada, ben)
        await asyncio.to_thread(_chat, a, b, ben)
    finally:
        for d in drivers:
            await asyncio.to_thread(d.quit)


def _ben_follows_and_ada_sees_the_badge(a: Any, b: Any, ada: Person, ben: Person) -> None:
    a.go("/explore")
    _socket_open(a)
    b.go(f"/people/{ada.username}")
    b.wait("#actions")
    b.check("profile")
    b.css("button[data-action=follow]").click()
    b.wait("button[data-action=unfollow]")
    # Ada's page was not reloaded: the notification frame on her socket turned the badge on.
    a.wait_until(lambda: a.css("#badge-notes").get_attribute("hidden") is None, "the notification badge")
    assert a.css("#badge-notes").get_attribute("data-count") == "1"
    a.go("/notifications")
    a.wait("#notes")
    assert f"@{ben.username} started following you" in a.css("#notes").text
    a.check("notifications")
    a.go("/settings/profile")
    a.wait("#f-display_name")
    a.check("settings")
    a.go(f"/people/{ada.username}/followers")
    a.wait("#people")
    assert f"@{ben.username}" in a.css("#people").text
    a.check("followers")
    a.go("/settings/requests")
    a.wait("main h1")
    a.check("requests")


def _chat(a: Any, b: Any, ben: Person) -> None:
    a.go("/messages")
    a.wait("#f-dm")
    a.check("chats")
    a.fill("#f-dm", ben.username)
    a.css("form[aria-labelledby=new-direct] button[type=submit]").click()
    a.wait("#compose")
    chat_url = a.d.current_url
    _socket_open(a)
    b.go(chat_url.removeprefix(a.base))
    b.wait("#compose")
    _socket_open(b)
    b.d.execute_script("document.body.dataset.marker = 'no-reload'")
    # Ada sends; the message appears in Ben's open page without a reload.
    a.fill("#f-message", "Tea at five?")
    a.css("#compose button[type=submit]").click()
    a.wait_until(lambda: "Tea at five?" in a.css("#messages").text, "the message in the sender's page")
    b.wait_until(lambda: "Tea at five?" in b.css("#messages").text, "the message live in the other browser")
    assert b.css("body").get_attribute("data-marker") == "no-reload"
    assert len(b.d.find_elements("css selector", "#messages li.msg")) == 1
    # Ben saw it (his page sent a read frame): Ada's message turns "read"; Ben types and Ada sees it.
    a.wait_until(lambda: a.css("#messages li.msg.mine .receipt").get_attribute("data-read") == "true",
                 "the read receipt")
    b.css("#f-message").send_keys("Sure")
    a.wait_until(lambda: "typing" in a.css("#typing").text, "the typing indicator")
    b.css("#compose button[type=submit]").click()
    a.wait_until(lambda: "Sure" in a.css("#messages").text, "the answer live")
    assert len(a.d.find_elements("css selector", "#messages li.msg")) == 2
    a.check("chat")
