"""The pages of the identities beyond email, through an in-process station: registration by phone with the SMS
code (read from `quark.auth.sms_requested` on NATS, as the mailer gets it), phone sign-in, and sign-in with the
local OpenID Connect provider of the auth tests (a real HTTP server: the browser's hops to it are made here
with a plain HTTP client), first sign-in choosing the username, later sign-ins, link and unlink in settings."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from oidc_provider import CLIENT_SECRET, LocalOidcProvider
from webkit import BASE, PASSWORD, Browser, Station, sign_up, start_station

from quark_auth.settings import ProviderSettings
from quark_sdk.events import CloudEvent, stream_for
from quark_sdk.testing import QuarkTestEnv, eventually, read_stream

PHONE = "+447911123456"


@pytest.fixture
def provider() -> Iterator[LocalOidcProvider]:
    local = LocalOidcProvider().start()
    yield local
    local.stop()


@pytest.fixture
async def station(quark: QuarkTestEnv, tmp_path: Path, provider: LocalOidcProvider) -> AsyncIterator[Station]:
    s = await start_station(quark, tmp_path, with_media=False)
    auth = s.ctx("auth").settings
    auth.oidc_providers = {name: ProviderSettings(**conf) for name, conf in provider.settings().items()}
    auth.app_url = BASE
    auth.sms_backoff_base = 0
    auth.secret_store().put("auth/oidc/local", {"client_secret": CLIENT_SECRET})
    try:
        yield s
    finally:
        await s.close()


async def sms_code(station: Station, phone: str, kind: str) -> str:
    """Act as the mailer: the code of the last `quark.auth.sms_requested` to the number, from NATS."""
    bus = station.ctx("auth").bus
    assert bus is not None
    stream = stream_for("auth", station.quark.namespace)

    async def find() -> str | None:
        code = None
        for msg in await read_stream(bus.js, stream):
            event = CloudEvent.from_bytes(msg.data)
            if event.type == "quark.auth.sms_requested" and event.data["phone"] == phone and event.data["kind"] == kind:
                code = str(event.data["code"])
        return code

    return str(await eventually(find, timeout=20, what=f"{kind} SMS to {phone}"))


async def through_provider(b: Browser, start: str) -> httpx.Response:
    """Follow a provider button: the station's redirect, the provider (real HTTP), back to the callback."""
    resp = await b.get(start)
    assert resp.status_code == 303, resp.text
    async with httpx.AsyncClient() as outside:
        answer = await outside.get(resp.headers["location"])
    assert answer.status_code == 302, answer.text
    back = urlsplit(answer.headers["location"])
    assert f"{back.scheme}://{back.netloc}" == BASE
    return await b.get(f"{back.path}?{back.query}")


async def test_register_by_phone_with_the_sms_code_then_sign_in_by_code(station: Station) -> None:
    b = station.browser()
    await b.get("/register")
    page = await b.post("/register", {"username": "phoebe", "phone": "+44 7911 123456", "password": PASSWORD})
    assert page.status_code == 200 and 'action="/register/phone/confirm"' in page.text
    code = await sms_code(station, PHONE, "verify_phone")
    done = await b.post("/register/phone/confirm", {"phone": PHONE, "code": code})
    assert done.status_code == 303, done.text
    me = (await b.http.get("/api/v1/web/me")).json()
    assert me["account"]["username"] == "phoebe"

    await b.post("/logout")
    other = station.browser()
    await other.get("/login/phone")
    sent = await other.post("/login/phone", {"phone": PHONE})
    assert 'action="/login/phone/confirm"' in sent.text
    wrong = await other.post("/login/phone/confirm", {"phone": PHONE, "code": "000000"})
    assert wrong.status_code == 401 and 'role="alert"' in wrong.text
    signed = await other.post("/login/phone/confirm", {"phone": PHONE,
                                                       "code": await sms_code(station, PHONE, "login_code")})
    assert signed.status_code == 303
    assert (await other.http.get("/api/v1/web/me")).json()["account"]["username"] == "phoebe"


async def test_sign_in_with_the_provider_choose_a_username_then_sign_in_again(station: Station) -> None:
    b = station.browser()
    login = await b.get("/login")
    assert 'href="/login/oidc/local"' in login.text and "Local ID" in login.text
    signup = await through_provider(b, "/login/oidc/local")
    assert signup.status_code == 200 and 'value="jane"' in signup.text  # suggested, changeable
    done = await b.post("/login/oidc/signup", {"signup_token": _hidden(signup.text, "signup_token"),
                                               "username": "jane_doe", "display_name": "Jane"})
    assert done.status_code == 303, done.text
    assert (await b.http.get("/api/v1/web/me")).json()["account"]["username"] == "jane_doe"

    again = station.browser()
    back = await through_provider(again, "/login/oidc/local")
    assert back.status_code == 303
    assert (await again.http.get("/api/v1/web/me")).json()["account"]["username"] == "jane_doe"


async def test_a_callback_not_started_by_this_browser_is_refused(station: Station) -> None:
    victim, attacker = station.browser(), station.browser()
    resp = await attacker.get("/login/oidc/local")
    async with httpx.AsyncClient() as outside:
        answer = await outside.get(resp.headers["location"])
    back = urlsplit(answer.headers["location"])
    refused = await victim.get(f"{back.path}?{back.query}")  # login CSRF: the attacker's code and state
    assert refused.status_code == 400
    assert (await victim.http.get("/api/v1/web/me")).status_code == 401


async def test_link_and_unlink_a_provider_in_settings(station: Station) -> None:
    b = station.browser()
    await sign_up(station, b, "alice")
    settings = await b.get("/settings/sessions")
    assert 'href="/login/oidc/local?intent=link"' in settings.text
    linked = await through_provider(b, "/login/oidc/local?intent=link")
    assert linked.status_code == 303 and linked.headers["location"] == "/settings/sessions"
    page = await b.get("/settings/sessions")
    assert 'action="/settings/providers/local/unlink"' in page.text
    assert (await b.post("/settings/providers/local/unlink")).status_code == 303
    assert 'href="/login/oidc/local?intent=link"' in (await b.get("/settings/sessions")).text


def _hidden(html: str, name: str) -> str:
    marker = f'name="{name}" value="'
    start = html.index(marker) + len(marker)
    return html[start:html.index('"', start)]
