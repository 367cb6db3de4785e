"""The Traefik provider's output, checked against the documented shape of Traefik v3 dynamic configuration.

The JSON Schema below covers the subset the hub emits, written from Traefik's reference pages
(routing configuration: routers, services/load balancer, middlewares rateLimit and headers; the
HTTP provider serves the same structure as the file provider). `additionalProperties: false`
everywhere so a misspelt key (e.g. `entrypoints`, `healthcheck.intervall`) fails the test.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import jsonschema
from hub_testkit import fake_instance, manifest, register, start_hub

from quark_hub.registry_store import InstanceRecord, ModuleRecord
from quark_hub.settings import HubSettings
from quark_hub.traefik import build_config
from quark_sdk.registry import Manifest
from quark_sdk.testing import QuarkTestEnv, eventually

DURATION = r"^[0-9]+(ns|us|µs|ms|s|m|h)$"
NAME = r"^[A-Za-z0-9][A-Za-z0-9_-]*$"  # no '@': the provider suffix is Traefik's to add

TRAEFIK_DYNAMIC_HTTP = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "additionalProperties": False,
    "required": ["http"],
    "properties": {"http": {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "routers": {"type": "object", "propertyNames": {"pattern": NAME},
                        "additionalProperties": {"$ref": "#/$defs/router"}},
            "services": {"type": "object", "propertyNames": {"pattern": NAME},
                         "additionalProperties": {"$ref": "#/$defs/service"}},
            "middlewares": {"type": "object", "propertyNames": {"pattern": NAME},
                            "additionalProperties": {"$ref": "#/$defs/middleware"}},
        },
    }},
    "$defs": {
        "router": {
            "type": "object", "additionalProperties": False, "required": ["rule", "service"],
            "properties": {
                "rule": {"type": "string", "minLength": 1},
                "service": {"type": "string", "pattern": NAME},
                "entryPoints": {"type": "array", "items": {"type": "string"}, "minItems": 1},
                "middlewares": {"type": "array", "items": {"type": "string"}},
                "priority": {"type": "integer", "minimum": 0},
                "ruleSyntax": {"enum": ["v2", "v3"]},
            },
        },
        "service": {
            "type": "object", "additionalProperties": False, "required": ["loadBalancer"],
            "properties": {"loadBalancer": {
                "type": "object", "additionalProperties": False, "required": ["servers"],
                "properties": {
                    "servers": {"type": "array", "minItems": 1, "items": {
                        "type": "object", "additionalProperties": False, "required": ["url"],
                        "properties": {"url": {"type": "string", "pattern": r"^https?://[^/\s]+$"},
                                       "weight": {"type": "integer", "minimum": 0}},
                    }},
                    "passHostHeader": {"type": "boolean"},
                    "healthCheck": {
                        "type": "object", "additionalProperties": False, "required": ["path"],
                        "properties": {
                            "path": {"type": "string", "pattern": "^/"},
                            "interval": {"type": "string", "pattern": DURATION},
                            "unhealthyInterval": {"type": "string", "pattern": DURATION},
                            "timeout": {"type": "string", "pattern": DURATION},
                            "scheme": {"type": "string"}, "hostname": {"type": "string"},
                            "port": {"type": "integer"}, "method": {"type": "string"},
                            "status": {"type": "integer"}, "followRedirects": {"type": "boolean"},
                            "headers": {"type": "object", "additionalProperties": {"type": "string"}},
                        },
                    },
                    "passiveHealthCheck": {
                        "type": "object", "additionalProperties": False,
                        "properties": {"failureWindow": {"type": "string", "pattern": DURATION},
                                       "maxFailedAttempts": {"type": "integer", "minimum": 1}},
                    },
                },
            }},
        },
        "middleware": {
            "type": "object", "minProperties": 1, "maxProperties": 1,
            "properties": {
                "rateLimit": {
                    "type": "object", "additionalProperties": False,
                    "properties": {"average": {"type": "integer", "minimum": 0},
                                   "burst": {"type": "integer", "minimum": 0},
                                   "period": {"type": "string", "pattern": DURATION}},
                },
                "retry": {
                    "type": "object", "additionalProperties": False, "required": ["attempts"],
                    "properties": {"attempts": {"type": "integer", "minimum": 1},
                                   "initialInterval": {"type": "string", "pattern": DURATION},
                                   "timeout": {"type": "string", "pattern": DURATION},
                                   "retryNonIdempotentMethod": {"type": "boolean"}},
                },
                "headers": {
                    "type": "object", "additionalProperties": False,
                    "properties": {
                        "customRequestHeaders": {"$ref": "#/$defs/stringMap"},
                        "customResponseHeaders": {"$ref": "#/$defs/stringMap"},
                        "accessControlAllowCredentials": {"type": "boolean"},
                        "accessControlAllowHeaders": {"$ref": "#/$defs/strings"},
                        "accessControlAllowMethods": {"type": "array", "items": {
                            "enum": ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT",
                                     "TRACE"]}},
                        "accessControlAllowOriginList": {"$ref": "#/$defs/strings"},
                        "accessControlAllowOriginListRegex": {"$ref": "#/$defs/strings"},
                        "accessControlExposeHeaders": {"$ref": "#/$defs/strings"},
                        "accessControlMaxAge": {"type": "integer", "minimum": 0},
                        "addVaryHeader": {"type": "boolean"},
                        "frameDeny": {"type": "boolean"},
                        "customFrameOptionsValue": {"type": "string"},
                        "contentTypeNosniff": {"type": "boolean"},
                        "browserXssFilter": {"type": "boolean"},
                        "contentSecurityPolicy": {"type": "string"},
                        "referrerPolicy": {"type": "string"},
                        "permissionsPolicy": {"type": "string"},
                        "stsSeconds": {"type": "integer", "minimum": 0},
                        "stsIncludeSubdomains": {"type": "boolean"},
                        "stsPreload": {"type": "boolean"},
                        "forceSTSHeader": {"type": "boolean"},
                    },
                },
            },
            "additionalProperties": False,
        },
        "strings": {"type": "array", "items": {"type": "string"}},
        "stringMap": {"type": "object", "additionalProperties": {"type": "string"}},
    },
}


def validate(config: dict[str, Any]) -> None:
    jsonschema.validate(config, TRAEFIK_DYNAMIC_HTTP, cls=jsonschema.Draft202012Validator)
    http = config["http"]
    for name, router in http.get("routers", {}).items():
        assert router["service"] in http["services"], f"router {name} points at a missing service"
        for mw in router.get("middlewares", []):
            assert mw in http["middlewares"], f"router {name} uses a missing middleware {mw}"
        # Traefik v3 rule syntax: matchers with backquoted arguments, joined by ||.
        for part in router["rule"].split(" || "):
            assert re.fullmatch(r"Path\(`/[A-Za-z0-9_\-./]+`\)|PathPrefix\(`/[A-Za-z0-9_\-./]*/`\)", part), part


def test_schema_rejects_what_traefik_would_not_take() -> None:
    good = build_config([], HubSettings())
    validate(good)
    bad = {"http": {"routers": {"x": {"rule": "PathPrefix(`/a`)", "service": "x", "entrypoints": ["web"]}},
                    "services": {}, "middlewares": {}}}
    try:
        validate(bad)
    except jsonschema.ValidationError:
        pass
    else:
        raise AssertionError("a misspelt key must not validate")


def test_config_for_modules_in_every_state_is_valid() -> None:
    def rec(module: str, iid: str, url: str, health: str) -> InstanceRecord:
        return InstanceRecord(instance_id=iid, module=module, version="1.0.0", instance_url=url,
                              health_url=url + "/health/ready", registered_at=1.0, last_heartbeat=1.0,
                              lease_ttl=15, health=health)  # type: ignore[arg-type]

    def mod(name: str, api: list[str], *instances: InstanceRecord) -> ModuleRecord:
        return ModuleRecord(name, Manifest.model_validate(manifest(name, api=api)), 1.0, list(instances))

    modules = [
        mod("blog", ["/api/v1/posts", "/api/v1/feed"], rec("blog", "a", "http://127.0.5.1:3004", "healthy"),
            rec("blog", "b", "http://127.0.5.2:3004", "degraded"),
            rec("blog", "c", "http://127.0.5.3:3004", "unhealthy")),
        mod("media", ["/api/v1/media"], rec("media", "d", "http://127.0.5.4:3003", "unhealthy")),
        mod("ai", ["/api/v1/ai"]),
    ]
    config = build_config(modules, HubSettings(traefik_cors_origins=["https://quark.example"]))
    validate(config)
    http = config["http"]
    assert set(http["routers"]) == {"blog"} and set(http["services"]) == {"blog"}
    assert http["routers"]["blog"]["rule"] == ("Path(`/api/v1/posts`) || PathPrefix(`/api/v1/posts/`) || "
                                               "Path(`/api/v1/feed`) || PathPrefix(`/api/v1/feed/`)")
    assert http["routers"]["blog"]["priority"] == 1000 + len("/api/v1/posts")
    assert http["routers"]["blog"]["entryPoints"] == ["web", "websecure"]
    assert http["services"]["blog"]["loadBalancer"]["servers"] == [{"url": "http://127.0.5.1:3004"},
                                                                   {"url": "http://127.0.5.2:3004"}]
    assert http["services"]["blog"]["loadBalancer"]["healthCheck"]["path"] == "/health/ready"
    assert http["middlewares"]["quark-rate-limit"]["rateLimit"] == {"average": 100, "burst": 200, "period": "1s"}
    assert http["middlewares"]["quark-cors"]["headers"]["accessControlAllowOriginList"] == ["https://quark.example"]


async def test_served_config_follows_health(quark: QuarkTestEnv, tmp_path: Path) -> None:
    svc = await start_hub(quark, tmp_path)

    async def config() -> dict[str, Any]:
        resp = await svc.client.get("/api/v1/hub/traefik/config")
        assert resp.status_code == 200 and resp.headers["content-type"] == "application/json"
        body: dict[str, Any] = resp.json()
        validate(body)
        return body

    assert (await config())["http"]["routers"] == {}
    async with fake_instance() as one, fake_instance() as two:
        await register(svc, manifest("blog", api=["/api/v1/posts"]), one.url)
        await register(svc, manifest("blog", api=["/api/v1/posts"]), two.url)
        servers = (await config())["http"]["services"]["blog"]["loadBalancer"]["servers"]
        assert sorted(s["url"] for s in servers) == sorted([one.url, two.url])

        await one.stop()  # crash one instance: it leaves the load balancer

        async def one_server() -> bool:
            svcs = (await config())["http"]["services"]
            return svcs.get("blog", {}).get("loadBalancer", {}).get("servers") == [{"url": two.url}]

        await eventually(one_server, what="crashed instance out of the Traefik config")
        two.status = 500  # the other goes bad too: no server left, so no router either

        async def no_route() -> bool:
            http = (await config())["http"]
            return "blog" not in http["routers"] and "blog" not in http["services"]

        await eventually(no_route, what="module without healthy instances unrouted")
        two.status = 200

        async def back() -> bool:
            return "blog" in (await config())["http"]["routers"]

        await eventually(back, what="recovered instance routed again")
