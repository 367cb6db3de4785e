"""Traefik's dynamic configuration, as its HTTP provider polls it (`providers.http.endpoint`).

One router and one load-balancer service per module that has at least one routable (healthy or
degraded) instance; every such instance is a server. The router matches the module's route
prefixes by whole segments (`/api/v1/a` never matches `/api/v1/ab`, as the hub's overlap check assumes),
with an explicit priority: the longest prefix wins, and a module that claims `/` gets it only as a
separate lowest-priority catch-all router (the web client). The hub's own router matches only its
public read paths (registry writes, this configuration, /token and /clients stay on the internal
network). Every router goes through three shared middlewares: a per-client rate limit, security
headers and CORS. Traefik also health-checks the servers itself, so a crash between two of the
hub's probes costs at most Traefik's own check interval; a server that refuses connections is taken
out after the first failed requests (passive check), and those requests are retried on another instance
when their method is idempotent (docs/fault-tolerance.md has the measured window).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

from quark_hub.registry_store import ModuleRecord
from quark_hub.settings import HubSettings

RATE_LIMIT = "quark-rate-limit"
SECURITY_HEADERS = "quark-security-headers"
CORS = "quark-cors"
RETRY = "quark-retry"
# Retry last, next to the load balancer: a request is counted once by the rate limit, and a retry goes
# to the next server of the same service (another instance of the module).
MIDDLEWARES = (RATE_LIMIT, SECURITY_HEADERS, CORS, RETRY)


# The hub's own module name: its router is narrowed to settings.traefik_public_paths (reads only).
HUB = "hub"
READ_METHODS = ("GET", "HEAD", "OPTIONS")


# Explicit router priorities (Traefik's default, the rule's length, lets a module that lists many prefixes
# outrank every other router). A prefix router ranks by its longest prefix, so the longest prefix wins; the
# catch-all "/" (the web client) ranks below everything; the hub's narrowed public router sits in between.
CATCH_ALL = "/"
CATCH_ALL_PRIORITY = 1
PREFIX_PRIORITY_BASE = 1000


def segment_match(prefix: str) -> str:
    """A prefix matched by whole path segments: /api/v1/a matches /api/v1/a and /api/v1/a/..., never /api/v1/ab.

    (Traefik's PathPrefix is a plain string prefix; the hub checks overlaps by segment, so the rules must too.)"""
    return f"Path(`{prefix}`) || PathPrefix(`{prefix}/`)"


def rule_for(prefixes: Sequence[str]) -> str:
    return " || ".join(segment_match(p) for p in prefixes)


def priority_for(prefixes: Sequence[str]) -> int:
    return PREFIX_PRIORITY_BASE + max((len(p) for p in prefixes), default=0)


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
        # Only when the server did not answer at all (connection refused or reset: a crashed instance), and
        # only for idempotent methods (retryNonIdempotentMethod stays false): a POST is never sent twice.
        RETRY: {"retry": {"attempts": settings.traefik_retry_attempts, "initialInterval": "20ms"}},
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


Pool = tuple[str, int, list[str]]  # (version, weight, server URLs); version "*" = every instance equally


def version_service(module: str, version: str) -> str:
    return f"{module}-v{version.replace('.', '-').replace('+', '-')}"


def build_config(modules: Sequence[ModuleRecord], settings: HubSettings,
                 pools: Mapping[str, Sequence[Pool]] | None = None) -> dict[str, Any]:
    """`modules` as the gateways may route them (quark_hub.lifecycle.routed_modules); `pools`, when a module
    has a weighted split between versions (an upgrade in progress), one load balancer per version and a
    Traefik `weighted` service over them."""
    routers: dict[str, Any] = {}
    services: dict[str, Any] = {}

    def router(rule: str, service: str, priority: int) -> dict[str, Any]:
        return {"rule": rule, "service": service, "priority": priority,
                "entryPoints": list(settings.traefik_entrypoints), "middlewares": list(MIDDLEWARES)}

    for module in sorted(modules, key=lambda m: m.name):
        servers = sorted({i.instance_url for i in module.instances if i.routable})
        prefixes = [p for p in module.manifest.exposes.api if p != CATCH_ALL]
        catch_all = CATCH_ALL in module.manifest.exposes.api and module.name != HUB
        if not servers or not (prefixes or catch_all) or (module.name == HUB and not settings.traefik_public_paths):
            continue
        if module.name == HUB:
            public = settings.traefik_public_paths
            routers[HUB] = router(public_rule(public), HUB, priority_for(public))
        elif prefixes:
            routers[module.name] = router(rule_for(prefixes), module.name, priority_for(prefixes))
        if catch_all:  # its own router, so the module's other prefixes keep their rank
            routers[f"{module.name}-catch-all"] = router(f"PathPrefix(`{CATCH_ALL}`)", module.name,
                                                        CATCH_ALL_PRIORITY)
        split = [p for p in (pools or {}).get(module.name, ()) if p[0] != "*"]
        if split:
            services[module.name] = {"weighted": {"services": [
                {"name": version_service(module.name, v), "weight": w} for v, w, _ in split]}}
            for v, _, urls in split:
                services[version_service(module.name, v)] = _load_balancer(module, urls, settings)
        else:
            services[module.name] = _load_balancer(module, servers, settings)
    return {"http": {"routers": routers, "services": services, "middlewares": middlewares(settings)}}


def _load_balancer(module: ModuleRecord, servers: Sequence[str], settings: HubSettings) -> dict[str, Any]:
    return {"loadBalancer": {
        "servers": [{"url": url} for url in servers],
        "passHostHeader": True,
        # Active: Traefik probes every server itself, so a crash costs at most one interval even between
        # two of the hub's probes. Passive: failed requests take a server out at once, before any probe.
        "healthCheck": {"path": _health_path(module), "interval": settings.traefik_health_interval,
                        "unhealthyInterval": settings.traefik_health_interval,
                        "timeout": settings.traefik_health_timeout},
        "passiveHealthCheck": {"failureWindow": settings.traefik_passive_window,
                               "maxFailedAttempts": settings.traefik_passive_failures},
    }}
