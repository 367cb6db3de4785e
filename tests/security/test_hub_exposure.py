"""Issue 16.14: the hub's dashboard and discovery list internal instance URLs.

In production (env=prod) every route that shows the registry's internals needs an admin or operator user
token (or a service token granted `hub:read`), and the public gateway (the hub's Traefik router) reaches only
the JWKS. In dev the station's own page stays open, as before.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from quark_hub.app import module as hub_module
from quark_hub.settings import PUBLIC_PATHS, HubSettings
from quark_sdk.testing import QuarkTestEnv, RunningModule, assert_problem, eventually

# Every route that shows instance URLs, health or manifests.
INTERNAL = ("/api/v1/hub/services", "/api/v1/hub/services/hub", "/modules/discovery", "/api/v1/hub/events",
            "/api/v1/hub/stream", "/hub")
TOKEN = "r" * 40


async def _hub(quark: QuarkTestEnv, tmp_path: Path, env: str) -> RunningModule:
    svc = await quark.start(hub_module, env=env, registration_token=TOKEN, data_dir=tmp_path / "hub",
                            monitor_interval=0.2, lease_ttl=15.0, self_dock=True, stream_refresh=0.2,
                            stream_max_seconds=0.3)

    async def docked() -> bool:
        resp = await svc.client.get("/api/v1/hub/services/hub", headers=_admin(quark))
        return resp.status_code == 200

    await eventually(docked, what="the hub docked in its own registry")
    return svc


def _admin(quark: QuarkTestEnv) -> dict[str, str]:
    return quark.bearer(quark.user_token(roles=("admin",)))


async def _get(svc: RunningModule, path: str, headers: dict[str, str] | None = None) -> Any:
    return await svc.client.get(path, headers=headers)


async def test_prod_hub_lists_nothing_internal_without_an_admin_or_operator_token(
        quark: QuarkTestEnv, tmp_path: Path) -> None:
    svc = await _hub(quark, tmp_path, "prod")
    user = quark.bearer(quark.user_token(roles=("user",)))
    moderator = quark.bearer(quark.user_token(roles=("moderator",)))
    operator = quark.bearer(quark.user_token(roles=("operator",)))
    reader = quark.bearer(quark.service_token("web", ("hub:read",)))
    other_service = quark.bearer(quark.service_token("blog", ("users:read",)))
    for path in INTERNAL:
        body = assert_problem(await _get(svc, path), 401)
        assert "instance_url" not in str(body) and "127.0.0.1" not in str(body)
        for who in (user, moderator, other_service):
            assert_problem(await _get(svc, path, who), 403)
        for who in (_admin(quark), operator, reader):
            resp = await _get(svc, path, who)
            assert resp.status_code == 200, (path, resp.text)
    assert "instance_url" in (await _get(svc, "/api/v1/hub/services", operator)).text
    # What every module needs to verify service tokens stays public.
    assert (await _get(svc, "/api/v1/hub/.well-known/jwks.json")).status_code == 200


async def test_dev_hub_stays_open(quark: QuarkTestEnv, tmp_path: Path) -> None:
    svc = await _hub(quark, tmp_path, "dev")
    for path in INTERNAL:
        resp = await _get(svc, path)
        assert resp.status_code == 200, (path, resp.text)


@pytest.mark.parametrize("env", ["prod", "dev"])
def test_the_public_gateway_reaches_only_the_jwks_in_prod(env: str) -> None:
    settings = HubSettings.load(env=env, registration_token=TOKEN)
    if env == "prod":
        assert settings.traefik_public_paths == ["/api/v1/hub/.well-known/jwks.json"]
    else:
        assert settings.traefik_public_paths == list(PUBLIC_PATHS)
    # An operator who chooses to publish more says so explicitly.
    explicit = HubSettings.load(env="prod", registration_token=TOKEN, traefik_public_paths=["/modules/discovery"])
    assert explicit.traefik_public_paths == ["/modules/discovery"]
