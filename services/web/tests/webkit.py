"""Helpers of the web module's tests: an in-process station (auth, user, media, blog and web behind the
SDK's embedded gateway, on this test's PostgreSQL, Valkey and NATS) and a browser-like client."""

from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from quark_auth.app import module as auth_module
from quark_blog.app import module as blog_module
from quark_media.app import module as media_module
from quark_sdk.app import ServiceContext
from quark_sdk.auth import JWKSCache, TokenVerifier
from quark_sdk.events import CloudEvent, stream_for
from quark_sdk.gateway import EmbeddedGateway, MountedModule
from quark_sdk.testing import QuarkTestEnv, RunningModule, eventually, read_stream
from quark_user.app import module as user_module
from quark_web.app import module as web_module
from quark_web.runtime import WebRuntime

PASSWORD = "correct horse battery staple"
BASE = "http://testserver"
CSRF_INPUT = re.compile(r'name="csrf_token" value="([^"]+)"')
AUTH_FAST = {"bcrypt_rounds": 4, "login_ip_limit": 10_000, "register_ip_limit": 10_000,
             "email_request_ip_limit": 10_000}


@dataclass
class Browser:
    """httpx with a cookie jar against the station's gateway, reading CSRF tokens from the pages."""

    http: httpx.AsyncClient
    csrf: str = ""

    async def get(self, path: str, **kw: Any) -> httpx.Response:
        resp = await self.http.get(path, **kw)
        m = CSRF_INPUT.search(resp.text) if resp.headers.get("content-type", "").startswith("text/html") else None
        if m:
            self.csrf = m.group(1)
        return resp

    async def post(self, path: str, data: dict[str, Any] | None = None, *, csrf: bool = True,
                   **kw: Any) -> httpx.Response:
        form = dict(data or {})
        if csrf:
            if not self.csrf:
                await self.get("/login")
            form["csrf_token"] = self.csrf
        return await self.http.post(path, data=form, **kw)

    async def htmx(self, path: str, data: dict[str, Any] | None = None) -> httpx.Response:
        if not self.csrf:
            await self.get("/login")
        return await self.http.post(path, data=data or {},
                                    headers={"HX-Request": "true", "X-CSRF-Token": self.csrf})


@dataclass
class Station:
    quark: QuarkTestEnv
    modules: dict[str, RunningModule]
    gateway: EmbeddedGateway
    clients: list[httpx.AsyncClient] = field(default_factory=list)

    @property
    def web(self) -> WebRuntime:
        return self.modules["web"].ctx.runtime

    def ctx(self, name: str) -> ServiceContext:
        return self.modules[name].ctx

    def browser(self) -> Browser:
        http = httpx.AsyncClient(transport=httpx.ASGITransport(app=self.gateway), base_url=BASE,
                                 follow_redirects=False)
        self.clients.append(http)
        return Browser(http)

    def api(self) -> httpx.AsyncClient:
        http = httpx.AsyncClient(transport=httpx.ASGITransport(app=self.gateway), base_url=BASE)
        self.clients.append(http)
        return http

    async def emailed_token(self, user_id: str, kind: str = "verify_email") -> str:
        """Act as the mailer: the token of the last `quark.auth.email_requested` for the user, from NATS."""
        bus = self.ctx("auth").bus
        assert bus is not None
        stream = stream_for("auth", self.quark.namespace)

        async def find() -> str | None:
            token = None
            for msg in await read_stream(bus.js, stream):
                event = CloudEvent.from_bytes(msg.data)
                if event.type == "quark.auth.email_requested" and event.data["user_id"] == user_id \
                        and event.data["kind"] == kind:
                    token = str(event.data["token"])
            return token

        return str(await eventually(find, timeout=20, what=f"{kind} email for {user_id}"))

    async def close(self) -> None:
        for c in self.clients:
            await c.aclose()


async def start_station(quark: QuarkTestEnv, tmp_path: Path, *, with_media: bool = True, with_ai: bool = False,
                        with_messaging: bool = False, with_moderation: bool = False,
                        web_settings: dict[str, Any] | None = None, with_hub: bool = False,
                        user_settings: dict[str, Any] | None = None) -> Station:
    modules: dict[str, RunningModule] = {}
    if with_hub:  # the registry and the operator's API (the console's operator pages)
        from quark_hub.app import module as hub_module

        modules["hub"] = await quark.start(hub_module, data_dir=tmp_path / "hub", self_dock=False,
                                           monitor_interval=300.0)
    modules["auth"] = await quark.start(auth_module, data_dir=tmp_path / "auth", **AUTH_FAST)
    modules["user"] = await quark.start(user_module, **(user_settings or {}))
    if with_media:
        modules["media"] = await quark.start(media_module, storage_url=(tmp_path / "media-store").as_uri(),
                                             processing_workers=2)
    modules["blog"] = await quark.start(blog_module, write_rate_limit=100_000)
    if with_ai:
        from quark_ai.app import module as ai_module

        modules["ai"] = await quark.start(ai_module, provider="local", corpus_refresh=0.0)
    if with_messaging:
        from quark_messaging.app import module as messaging_module

        modules["messaging"] = await quark.start(messaging_module, ws_heartbeat_interval=5.0)
    if with_moderation:
        from quark_moderation.app import module as moderation_module

        modules["moderation"] = await quark.start(moderation_module)
    modules["web"] = await quark.start(web_module, **(web_settings or {}))
    mounted = []
    for name, m in modules.items():
        exposes = m.ctx.manifest.exposes
        mounted.append(MountedModule(name, m.app, tuple(exposes.api)))
    gateway = EmbeddedGateway(mounted)
    station = Station(quark, modules, gateway)
    # Every module trusts what auth signs (its JWKS through the gateway), as in a real station.
    jwks_client = station.api()
    for name, m in modules.items():
        if name == "auth":
            continue
        verifier = TokenVerifier({"quark-auth": JWKSCache(f"{BASE}/api/v1/auth/.well-known/jwks.json",
                                                          client=jwks_client)}, audience="quark")
        m.app.state.token_verifier = verifier
        m.ctx.verifier = verifier
    # The web module reaches the others through the same gateway.
    web = station.web
    await web.api.client.aclose()
    web.api.client = httpx.AsyncClient(transport=httpx.ASGITransport(app=gateway), base_url=BASE, timeout=30)
    if with_ai:
        modules["ai"].ctx.runtime.blog_http = station.api()  # the AI module reaches the blog via the gateway
    for name in ("user", "blog", *(["messaging"] if with_messaging else []),
                 *(["moderation"] if with_moderation else [])):
        for runner in modules[name].ctx.consumers:
            await eventually(lambda r=runner: r.ready.is_set(), what=f"{name} consumer subscribed")
    return station


async def sign_up(station: Station, b: Browser, username: str, *, verify: bool = True) -> str:
    """Register through the pages (signed in afterwards); returns the user id."""
    await b.get("/register")
    resp = await b.post("/register", {"username": username, "email": f"{username}@example.com",
                                      "password": PASSWORD, "display_name": username.title()})
    assert resp.status_code == 303, resp.text
    me = await b.http.get("/api/v1/web/me")
    assert me.status_code == 200, me.text
    user_id = str(me.json()["account"]["id"])
    if verify:
        token = await station.emailed_token(user_id)
        form = await b.get(f"/verify-email?token={token}")
        assert 'id="verify-confirm"' in form.text, form.text  # opening the link confirms nothing by itself
        page = await b.post("/verify-email", {"token": token})
        assert 'data-ok="true"' in page.text, page.text
    return user_id


async def wait_profile(station: Station, username: str) -> None:
    """The user and blog modules learn about a new account from auth's events."""
    api = station.api()

    async def known() -> bool:
        return (await api.get(f"/api/v1/users/{username}")).status_code == 200

    await eventually(known, timeout=20, what=f"profile of {username}")


def dumps(value: Any) -> str:
    return json.dumps(value, default=str)


sys.modules.setdefault("webkit", sys.modules[__name__])
