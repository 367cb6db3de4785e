"""Traefik's dynamic configuration, as its HTTP provider polls it (`providers.http.endpoint`).

One router and one load-balancer service per module that has at least one routable (healthy or
degraded) instance; every such instance is a server. The router matches the module's route
prefixes (DESIGN §3) — except the hub's own, which matches only its public read paths (registry
writes, this configuration, /token and /clients stay on the internal network) — and goes through
three shared middlewares: a per-client rate limit, security headers and CORS. Traefik also
health-checks the servers itself, so a crash between two of the hub's probes costs at most
Traefik's own check interval.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from quark_hub.registry_store import ModuleRecord
from quark_hub.settings import HubSettings

RATE_LIMIT = "quark-rate-limit"
SECURITY_HEADERS = "quark-security-headers"
CORS = "quark-cors"
MIDDLEWARES = (RATE_LIMIT, SECURITY_HEADERS, CORS)


# The hub's own module name: its router is narrowed to settings.traefik_public_paths (reads only).
HUB = "hub"
READ_METHODS = ("GET", "HEAD", "OPTIONS")


def rule_for(prefixes: Sequence[str]) -> str:
    return " || ".join(f"PathPrefix(`{p}`)" for p in prefixes)


def public_rule(paths: Sequence[str]) -> str:
    """Exact paths (or prefixes ending in "/"), read methods only: registry writes, /traefik/config, /token
    and /clients never match, so the gateway answers them 404 and only the internal network reaches them."""
    matchers = " || ".join(f"PathPrefix(`{p}`)" if p.endswith("/") else f"Path(`{p}`)" for p in paths)
    methods = " || ".join(f"Method(`{m}`)" for m in READ_METHODS)
    return f"({matchers}) && ({methods})"


def _health_path(module: ModuleRecord) -> str:
    """The health check path relative to a server URL (the instances' own health_url when on their origin)."""
    for inst in module.instances:
        server, health = urlsplit(inst.instance_url), urlsplit(inst.health_url)
        if (server.scheme, server.netloc) == (health.scheme, health.netloc) and health.path:
            return health.path
    return module.manifest.health_check


def middlewares(settings: HubSettings) -> dict[str, Any]:
    return {
        RATE_LIMIT: {"rateLimit": {"average": settings.traefik_rate_average, "burst": settings.traefik_rate_burst,
                                   "period": "1s"}},
        SECURITY_HEADERS: {"headers": {
            "frameDeny": True,
            "contentTypeNosniff": True,
            "browserXssFilter": True,
            "referrerPolicy": "strict-origin-when-cross-origin",
            "permissionsPolicy": "camera=(), microphone=(), geolocation=()",
            "stsSeconds": 31536000,
            "stsIncludeSubdomains": True,
            # Also over plain HTTP: TLS may end before Traefik (a load balancer), and without it Traefik sends
            # no Strict-Transport-Security then. Browsers ignore the header on http:// (RFC 6797 §8.1).
            "forceSTSHeader": True,
            "customResponseHeaders": {"X-Powered-By": "", "Server": ""},
        }},
        CORS: {"headers": {
            "accessControlAllowMethods": ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"],
            "accessControlAllowHeaders": ["Authorization", "Content-Type", "Idempotency-Key", "traceparent"],
            "accessControlExposeHeaders": ["Retry-After", "Location"],
            "accessControlAllowOriginList": list(settings.traefik_cors_origins),
            "accessControlAllowCredentials": False,
            "accessControlMaxAge": 600,
            "addVaryHeader": True,
        }},
    }


def build_config(modules: Sequence[ModuleRecord], settings: HubSettings) -> dict[str, Any]:
    routers: dict[str, Any] = {}
    services: dict[str, Any] = {}
    for module in sorted(modules, key=lambda m: m.name):
        servers = sorted({i.instance_url for i in module.instances if i.routable})
        prefixes = list(module.manifest.exposes.api)
        if not servers or not prefixes or (module.name == HUB and not settings.traefik_public_paths):
            continue
        routers[module.name] = {
            "rule": public_rule(settings.traefik_public_paths) if module.name == HUB else rule_for(prefixes),
            "service": module.name,
            "entryPoints": list(settings.traefik_entrypoints),
            "middlewares": list(MIDDLEWARES),
        }
        services[module.name] = {"loadBalancer": {
            "servers": [{"url": url} for url in servers],
            "passHostHeader": True,
            "healthCheck": {"path": _health_path(module), "interval": settings.traefik_health_interval,
                            "timeout": settings.traefik_health_timeout},
        }}
    return {"http": {"routers": routers, "services": services, "middlewares": middlewares(settings)}}
