"""Security misconfiguration (OWASP API8), SSRF (API7) and unsafe consumption (API10).

Where the headers come from: services do not set CORS or browser security headers themselves. In the
fleet (compose and Kubernetes) Traefik is the only entry point and applies the hub's three shared
middlewares to every module router (quark-rate-limit, quark-security-headers, quark-cors); Kubernetes
declares the same middlewares in deploy/k8s/ingress.yaml. So: the middleware definitions are checked
here, the services are checked to never answer a foreign Origin with CORS grants of their own, and
`quark dev` (embedded, development only) is documented as having neither.

SSRF: no service fetches a URL a user supplies. Profile links and post links/images are stored and
rendered, never fetched: a canary server on loopback proves no request reaches it. The only outbound
fetches are operator-configured (AI provider, AI → blog) or the hub's health probes of registered
instances; registry writes are guarded by QUARK_HUB_REGISTRATION_TOKEN.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
import yaml
from security_testkit import REPO, ServiceSpec, assert_problem, service_params, spec, start

from quark_hub.settings import HubSettings
from quark_sdk.testing import QuarkTestEnv

EVIL = "https://evil.example"


async def test_traefik_middlewares_set_security_headers_and_a_cors_allowlist(quark: QuarkTestEnv,
                                                                             tmp_path: Path) -> None:
    svc = await start(quark, spec("hub"), tmp_path, traefik_cors_origins=["https://quark.example"])
    config = (await svc.client.get("/api/v1/hub/traefik/config")).json()["http"]
    middlewares = config["middlewares"]
    headers = middlewares["quark-security-headers"]["headers"]
    assert headers["frameDeny"] is True and headers["contentTypeNosniff"] is True
    assert headers["stsSeconds"] >= 15_552_000 and headers["stsIncludeSubdomains"] is True
    assert headers["forceSTSHeader"] is True  # sent even when TLS ends before Traefik
    assert headers["referrerPolicy"] in ("strict-origin-when-cross-origin", "no-referrer", "same-origin")
    assert headers["customResponseHeaders"] == {"X-Powered-By": "", "Server": ""}  # removed
    cors = middlewares["quark-cors"]["headers"]
    assert cors["accessControlAllowOriginList"] == ["https://quark.example"]  # exactly the allowlist
    assert cors["accessControlAllowCredentials"] is False
    assert "*" not in cors["accessControlAllowHeaders"] and "*" not in cors["accessControlAllowMethods"]
    for router in config.get("routers", {}).values():  # every module router goes through all three
        assert set(router["middlewares"]) >= {"quark-rate-limit", "quark-security-headers", "quark-cors"}
    # Which routers exist and follow health is the hub's own test: plugin-hub/tests/test_traefik.py.


def test_cors_allowlist_defaults_to_nobody_and_deployments_name_their_origin() -> None:
    assert HubSettings.model_fields["traefik_cors_origins"].get_default(call_default_factory=True) == []
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    hub_env = compose["services"]["hub"]["environment"]
    assert "*" not in hub_env["QUARK_HUB_TRAEFIK_CORS_ORIGINS"]
    docs = list(yaml.safe_load_all((REPO / "deploy/k8s/ingress.yaml").read_text()))
    cors = next(d for d in docs if d and d.get("metadata", {}).get("name") == "quark-cors")
    origins = cors["spec"]["headers"].get("accessControlAllowOriginList") or []
    assert "*" not in origins
    headers = next(d for d in docs if d and d.get("metadata", {}).get("name") == "quark-security-headers")
    assert headers["spec"]["headers"]["contentTypeNosniff"] is True and headers["spec"]["headers"]["frameDeny"]


def test_deployments_guard_the_registry_with_a_token() -> None:
    """Without the token, anyone who reaches the hub could dock an instance: the hub would probe its URL and
    Traefik could route unclaimed prefixes to it. Compose refuses to start without it (no dev default) and
    every Kubernetes module, the hub included, reads it from a secret."""
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    hub_env = compose["services"]["hub"]["environment"]
    assert ":?" in hub_env["QUARK_HUB_REGISTRATION_TOKEN"]  # required, no default
    for manifest in sorted((REPO / "deploy/k8s/modules").glob("*.yaml")):
        assert "QUARK_HUB_REGISTRATION_TOKEN" in manifest.read_text(), manifest.name


@pytest.mark.parametrize("svc_spec", service_params())
async def test_services_grant_no_cors_of_their_own(svc_spec: ServiceSpec, quark: QuarkTestEnv,
                                                   tmp_path: Path) -> None:
    svc = await start(quark, svc_spec, tmp_path)
    user = await svc.user()
    got = await svc.client.get(svc_spec.protected, headers={**user.headers, "Origin": EVIL})
    assert got.status_code < 500
    preflight = await svc.client.options(svc_spec.protected, headers={
        "Origin": EVIL, "Access-Control-Request-Method": "DELETE",
        "Access-Control-Request-Headers": "authorization"})
    assert preflight.status_code < 500
    for resp in (got, preflight):
        assert "access-control-allow-origin" not in resp.headers, resp.headers
        assert "access-control-allow-credentials" not in resp.headers


async def test_token_responses_are_not_cached(quark: QuarkTestEnv, tmp_path: Path) -> None:
    svc = await start(quark, spec("auth"), tmp_path)
    await svc.user("alice")
    login = await svc.client.post("/api/v1/auth/login", json={"login": "alice", "password": "correct horse battery"})
    refresh = await svc.client.post("/api/v1/auth/refresh", json={"refresh_token": login.json()["refresh_token"]})
    for resp in (login, refresh):
        assert resp.status_code == 200 and resp.headers["cache-control"] == "no-store"


# -- SSRF ------------------------------------------------------------------------------------------------


class Canary:
    """A loopback TCP server that counts connections: any fetch of a user-supplied URL shows up here."""

    def __init__(self) -> None:
        self.connections = 0
        self.server: asyncio.AbstractServer | None = None

    async def __aenter__(self) -> Canary:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.connections += 1
            writer.write(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n")
            await writer.drain()
            writer.close()

        self.server = await asyncio.start_server(handle, "127.0.0.1", 0)
        return self

    @property
    def url(self) -> str:
        assert self.server is not None
        port = self.server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}/latest/meta-data"

    async def __aexit__(self, *exc: Any) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()


async def test_profile_links_are_stored_not_fetched(quark: QuarkTestEnv, tmp_path: Path) -> None:
    svc = await start(quark, spec("user"), tmp_path)
    me = await svc.user()
    async with Canary() as canary:
        for links in ([canary.url], ["http://169.254.169.254/latest/meta-data", "http://[::1]/", canary.url]):
            resp = await svc.client.patch("/api/v1/users/me", json={"links": links}, headers=me.headers)
            assert resp.status_code in (200, 422), resp.text
            if resp.status_code == 422:
                assert_problem(resp, 422)
        await svc.client.get(f"/api/v1/users/{me.username}", headers=me.headers)
        await svc.client.get("/api/v1/users/me", headers=me.headers)
        assert canary.connections == 0


async def test_post_links_and_images_are_rendered_not_fetched(quark: QuarkTestEnv, tmp_path: Path) -> None:
    svc = await start(quark, spec("blog"), tmp_path)
    me = await svc.user()
    async with Canary() as canary:
        body = f"[link]({canary.url}) ![img]({canary.url}/x.png) <img src=\"{canary.url}/y.png\">"
        resp = await svc.client.post("/api/v1/posts", json={"title": "t", "body": body, "publish": True},
                                     headers=me.headers)
        assert resp.status_code == 201, resp.text
        assert canary.url in resp.json()["body_html"]  # kept as a link for the reader's browser
        await svc.client.get(f"/api/v1/posts/{resp.json()['id']}")
        assert canary.connections == 0


async def test_registry_writes_need_the_token_when_set(quark: QuarkTestEnv, tmp_path: Path) -> None:
    """With a registration token nobody else can make the hub probe a URL (hub suite: test_registry.py::
    test_registration_token_guards_registry_writes covers heartbeat and deregistration too)."""
    svc = await start(quark, spec("hub"), tmp_path, registration_token="s3cret-docking-token")
    async with Canary() as canary:
        body = {"manifest": {"name": "evil", "version": "1.0.0", "type": "service", "description": "x",
                             "exposes": {"api": ["/api/v1/evil"]}, "health_check": "/health", "port": 1},
                "instance_url": canary.url.rsplit("/latest", 1)[0]}
        assert_problem(await svc.client.post("/api/v1/hub/modules/register", json=body), 401)
        assert_problem(await svc.client.post("/api/v1/hub/modules/register", json=body,
                                             headers={"Authorization": "Bearer guess"}), 401)
        assert canary.connections == 0
