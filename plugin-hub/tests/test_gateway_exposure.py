"""What of the hub the public gateway reaches, and the hub's refusal to run in prod without a registration token.

Traefik cannot run here, so `rule_matches` evaluates the subset of Traefik v3's rule language the hub emits
(`Path`, `PathPrefix`, `Method`, `||`, `&&`, parentheses) as Traefik's routing reference defines it. Every route
of the real hub app is checked against it: only reads on the documented public paths may match.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from fastapi.routing import APIRoute
from hub_testkit import manifest, start_hub

from quark_hub.app import module as hub_module
from quark_hub.registry_store import InstanceRecord, ModuleRecord
from quark_hub.settings import PUBLIC_PATHS, HubSettings
from quark_hub.traefik import build_config
from quark_sdk.config import ConfigError
from quark_sdk.registry import Manifest
from quark_sdk.testing import QuarkTestEnv, eventually

_TOKEN = re.compile(r"\s*(?:(Path|PathPrefix|Method)\(`([^`]*)`\)|(\|\||&&|\(|\)))")


def rule_matches(rule: str, method: str, path: str) -> bool:
    """Evaluate a Traefik v3 rule (the subset above) for one request."""
    out, pos = [], 0
    while pos < len(rule.rstrip()):
        m = _TOKEN.match(rule, pos)
        assert m, f"unsupported rule syntax at {rule[pos:]!r}"
        pos = m.end()
        if m.group(1) == "Path":
            out.append(repr(path == m.group(2)))
        elif m.group(1) == "PathPrefix":
            out.append(repr(path.startswith(m.group(2))))
        elif m.group(1) == "Method":
            out.append(repr(method == m.group(2)))
        else:
            out.append({"||": " or ", "&&": " and "}.get(m.group(3), m.group(3)))
    return bool(eval("".join(out), {"__builtins__": {}}))  # noqa: S307 - only True/False/and/or/parens


def _hub_routes() -> list[tuple[str, str]]:
    """(method, concrete path) of every route the hub serves, path parameters filled with sample values."""
    routes = []
    for router in hub_module.routers:
        for route in router.routes:
            if not isinstance(route, APIRoute):
                continue
            path = re.sub(r"\{[^}]+\}", "x1", route.path)
            routes.extend((method, path) for method in sorted(route.methods))
    assert len(routes) > 10
    return routes


def _hub_record() -> ModuleRecord:
    mf = Manifest.model_validate(hub_module.manifest().model_dump())
    inst = InstanceRecord(instance_id="h", module="hub", version="0.1.0", instance_url="http://hub:3002",
                          health_url="http://hub:3002/health/ready", registered_at=1.0, last_heartbeat=1.0,
                          lease_ttl=15, health="healthy")
    return ModuleRecord("hub", mf, 1.0, [inst])


PUBLIC = {("GET", "/api/v1/hub/services"), ("GET", "/api/v1/hub/services/x1"), ("GET", "/api/v1/hub/events"),
          ("GET", "/api/v1/hub/stream"), ("GET", "/api/v1/hub/.well-known/jwks.json"), ("GET", "/modules/discovery"),
          ("GET", "/hub"), ("GET", "/hub/static/x1")}


def test_the_gateway_reaches_only_the_hubs_public_reads() -> None:
    config = build_config([_hub_record()], HubSettings())
    rule = config["http"]["routers"]["hub"]["rule"]
    routed = {(m, p) for m, p in _hub_routes() if rule_matches(rule, m, p)}
    assert routed == PUBLIC
    for method, path in [("POST", "/api/v1/hub/modules/register"),
                         ("PUT", "/api/v1/hub/modules/a/instances/b/heartbeat"),
                         ("DELETE", "/api/v1/hub/modules/a/instances/b"), ("GET", "/api/v1/hub/traefik/config"),
                         ("POST", "/api/v1/hub/token"), ("GET", "/api/v1/hub/clients"), ("POST", "/api/v1/hub/clients"),
                         ("GET", "/api/v1/hub/servicesX"), ("POST", "/api/v1/hub/services"), ("GET", "/hubx")]:
        assert not rule_matches(rule, method, path), (method, path)
    assert rule_matches(rule, "OPTIONS", "/api/v1/hub/services")  # CORS preflight
    assert config["http"]["routers"]["hub"]["middlewares"] == ["quark-rate-limit", "quark-security-headers",
                                                               "quark-cors", "quark-retry"]


def test_other_modules_keep_their_prefix_routers_and_the_evaluator_is_faithful() -> None:
    blog = ModuleRecord("blog", Manifest.model_validate(manifest("blog", api=["/api/v1/posts"])), 1.0,
                        [InstanceRecord(instance_id="b", module="blog", version="1.0.0", instance_url="http://b:1",
                                        health_url="http://b:1/health/ready", registered_at=1.0, last_heartbeat=1.0,
                                        lease_ttl=15, health="healthy")])
    rule = build_config([blog], HubSettings())["http"]["routers"]["blog"]["rule"]
    assert rule == "Path(`/api/v1/posts`) || PathPrefix(`/api/v1/posts/`)"
    assert rule_matches(rule, "POST", "/api/v1/posts/1") and not rule_matches(rule, "GET", "/api/v1/feed")
    assert not rule_matches(rule, "GET", "/api/v1/postsx")
    assert rule_matches("(Path(`/a`) || Path(`/b`)) && Method(`GET`)", "GET", "/b")
    assert not rule_matches("Path(`/a`) || Path(`/b`) && Method(`GET`)", "POST", "/b")


def test_public_paths_are_a_setting_and_an_empty_list_unroutes_the_hub() -> None:
    narrow = build_config([_hub_record()], HubSettings(traefik_public_paths=["/modules/discovery"]))
    assert narrow["http"]["routers"]["hub"]["rule"].startswith("(Path(`/modules/discovery`)) && (")
    assert build_config([_hub_record()], HubSettings(traefik_public_paths=[]))["http"]["routers"] == {}
    with pytest.raises(ConfigError, match="TRAEFIK_PUBLIC_PATHS"):
        HubSettings.load(traefik_public_paths=["api/v1/hub"])
    assert list(PUBLIC_PATHS) == HubSettings().traefik_public_paths


async def test_served_config_routes_the_self_docked_hub_by_public_paths(quark: QuarkTestEnv, tmp_path: Path) -> None:
    svc = await start_hub(quark, tmp_path, self_dock=True)

    async def hub_router() -> dict[str, str] | None:
        resp = await svc.client.get("/api/v1/hub/traefik/config")
        assert resp.status_code == 200
        router: dict[str, str] | None = resp.json()["http"]["routers"].get("hub")
        return router

    router = await eventually(hub_router, what="the self-docked hub in its own Traefik config")
    assert not rule_matches(router["rule"], "POST", "/api/v1/hub/modules/register")
    assert rule_matches(router["rule"], "GET", "/modules/discovery")


def test_prod_without_a_registration_token_is_refused() -> None:
    with pytest.raises(ConfigError, match="QUARK_HUB_REGISTRATION_TOKEN must be set when QUARK_ENV=prod"):
        HubSettings.load(env="prod")
    with pytest.raises(ConfigError, match="QUARK_HUB_REGISTRATION_TOKEN"):
        HubSettings.load(env="prod", registration_token="   ")
    assert HubSettings.load(env="prod", registration_token="s" * 32).registration_token is not None
    assert HubSettings.load(env="dev").registration_token is None  # dev and tests may run an open registry


def test_quark_serve_hub_exits_with_a_one_line_error_in_prod_without_a_token(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "QUARK_ENV": "prod", "QUARK_DATA_DIR": str(tmp_path)}
    result = subprocess.run([sys.executable, "-m", "quark_sdk.cli", "serve", "quark_hub.app:module"], env=env,
                            capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "QUARK_HUB_REGISTRATION_TOKEN must be set" in lines[0], result.stderr
    assert "Traceback" not in result.stderr

