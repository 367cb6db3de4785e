"""The gateway: Traefik's static configuration feeds on the hub's HTTP provider, and the public routes of
DESIGN §3 are covered by the modules' manifests (which the hub turns into routers) and by the Kubernetes Ingress."""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml
from fleetkit import BEYOND_DESIGN, DEPLOY, DESIGN, ROUTES, load_compose, module_dirs, yaml_documents

TRAEFIK = DEPLOY / "traefik" / "traefik.yml"


@pytest.fixture(scope="module")
def static() -> dict[str, Any]:
    return yaml.safe_load(TRAEFIK.read_text())


def design_routes(text: str) -> dict[str, tuple[int, tuple[str, ...]]]:
    section = text.split("## 3.", 1)[1].split("\n## ", 1)[0]
    out: dict[str, tuple[int, tuple[str, ...]]] = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 3 or not cells[2].isdigit():
            continue
        name = cells[1].split()[0]  # "web — the people's client and the console" names web
        service = "hub" if name == "plugin-hub" else name
        # Only paths: the mailer's row names the event it consumes instead (it has no API of its own).
        out[service] = (int(cells[2]), tuple(p for p in re.findall(r"`([^`]+)`", cells[0]) if p.startswith("/")))
    return out


def prefix_covers(prefixes: list[str] | tuple[str, ...], route: str) -> bool:
    return any(route == p or route.startswith(p.rstrip("/") + "/") for p in prefixes)


def test_design_routes_copy_is_current() -> None:
    if not DESIGN.exists():
        pytest.skip(f"{DESIGN} is not beside the repository")
    design = design_routes(DESIGN.read_text())
    # A module of the design that this repository does not have yet (built in parallel) is not checked here.
    ours = set(ROUTES) - BEYOND_DESIGN
    assert ours <= set(design), f"modules missing from DESIGN §3: {ours - set(design)}"
    assert not BEYOND_DESIGN & set(design), "a module of BEYOND_DESIGN is in the design now: drop it from the set"
    for name, (port, prefixes) in ROUTES.items():
        if name in BEYOND_DESIGN:
            continue
        assert design[name][0] == port, name
        if name == "mailer":
            # DESIGN: no public API. Its pages are the dev mailbox (404 in prod) and the interim confirmation
            # pages (services/mailer/quark_mailer/landing.py) that the web client takes over.
            assert design[name][1] == () and prefixes == ("/dev/mail",)
        else:
            assert design[name][1] == prefixes, name


def test_traefik_static_config_uses_the_hub_http_provider(static: dict[str, Any]) -> None:
    http = static["providers"]["http"]
    assert http["endpoint"] == "http://hub:3002/api/v1/hub/traefik/config"
    assert re.fullmatch(r"\d+s", http["pollInterval"])
    assert static["providers"]["file"]["directory"] == "/etc/traefik/dynamic"
    assert static["entryPoints"]["web"]["address"] == ":80"


def test_traefik_entrypoints_match_the_hub_settings(static: dict[str, Any]) -> None:
    """The hub's routers name entrypoints (QUARK_HUB_TRAEFIK_ENTRYPOINTS); Traefik must define them."""
    import json

    compose = load_compose()
    configured = json.loads(compose["services"]["hub"]["environment"]["QUARK_HUB_TRAEFIK_ENTRYPOINTS"])
    try:
        from quark_hub.settings import HubSettings

        default = HubSettings.model_fields["traefik_entrypoints"].default_factory()  # type: ignore[misc]
        assert default == configured
    except ImportError:
        pass
    for name in configured:
        assert name in static["entryPoints"]


def test_traefik_health_and_metrics_are_internal(static: dict[str, Any]) -> None:
    compose = load_compose()
    traefik = compose["services"]["traefik"]
    assert static["ping"]["entryPoint"] == "internal"
    assert static["metrics"]["prometheus"]["entryPoint"] == "internal"
    internal_port = static["entryPoints"]["internal"]["address"].lstrip(":")
    assert not any(p.endswith(":" + internal_port) for p in traefik["ports"])
    dashboard_port = static["entryPoints"]["dashboard"]["address"].lstrip(":")
    assert any(p.startswith("127.0.0.1:") and p.endswith(":" + dashboard_port) for p in traefik["ports"])
    assert "./deploy/traefik/traefik.yml:/etc/traefik/traefik.yml:ro" in traefik["volumes"]
    assert "traefik" in traefik["healthcheck"]["test"] and "healthcheck" in traefik["healthcheck"]["test"]


def test_file_provider_routes_parse_and_only_serve_the_dashboard() -> None:
    files = sorted((DEPLOY / "traefik" / "dynamic").glob("*.yml"))
    assert files
    for f in files:
        conf = yaml.safe_load(f.read_text())
        for name, router in conf["http"]["routers"].items():
            assert router["entryPoints"] == ["dashboard"], f"{f.name}: {name} must stay off the public entrypoint"


@pytest.mark.parametrize("service", sorted(ROUTES))
def test_design_routes_are_exposed_by_the_manifests(service: str) -> None:
    """The hub builds one Traefik router per module from `exposes.api`: every §3 route must be in a manifest."""
    module = next((m for m in module_dirs() if m.name == service), None)
    if module is None or module.manifest is None:
        pytest.skip(f"module {service} has not landed yet")
    prefixes = module.manifest.get("exposes", {}).get("api", [])
    for route in ROUTES[service][1]:
        assert prefix_covers(prefixes, route), f"{module.rel}/module-manifest.yaml does not expose {route}"
    assert module.manifest["port"] == ROUTES[service][0]


def test_hub_turns_the_manifests_into_traefik_routers() -> None:
    """With every landed module docked, the hub's dynamic configuration routes every §3 route to it."""
    quark_hub_traefik = pytest.importorskip("quark_hub.traefik")
    from quark_hub.settings import HubSettings
    from quark_sdk.registry import Manifest

    class Instance:
        def __init__(self, url: str) -> None:
            self.instance_url, self.health_url, self.routable = url, url + "/health/ready", True

    class Record:
        def __init__(self, manifest: Manifest) -> None:
            self.name, self.manifest = manifest.name, manifest
            self.instances = [Instance(f"http://{manifest.name}:{manifest.port}")]

    records = [Record(Manifest.model_validate(m.manifest)) for m in module_dirs() if m.manifest]
    config = quark_hub_traefik.build_config(records, HubSettings())
    routers = config["http"]["routers"]
    for record in records:
        rule = routers[record.name]["rule"]
        if record.name == "hub":  # narrowed to its public reads: plugin-hub/tests/test_gateway_exposure.py
            assert "Path(`/modules/discovery`)" in rule and "Path(`/api/v1/hub/services`)" in rule
            assert "PathPrefix(`/api/v1/hub`)" not in rule and "Method(`GET`)" in rule
            continue
        for route in ROUTES.get(record.name, (0, ()))[1]:
            # Whole segments: Path(`p`) || PathPrefix(`p/`) for each prefix p.
            exact = re.findall(r"(?<!Prefix)Path\(`([^`]+)`\)", rule)
            under = re.findall(r"PathPrefix\(`([^`]+)`\)", rule)
            assert route in exact or any(route.startswith(p) for p in under), f"no router for {route}"
        servers = config["http"]["services"][record.name]["loadBalancer"]["servers"]
        assert servers == [{"url": f"http://{record.name}:{record.manifest.port}"}]
        assert set(routers[record.name]["middlewares"]) == {"quark-rate-limit", "quark-security-headers", "quark-cors",
                                                                "quark-retry"}


def test_kubernetes_ingress_covers_every_design_route() -> None:
    docs = yaml_documents(DEPLOY / "k8s" / "ingress.yaml")
    ingress = next(d for d in docs if d["kind"] == "Ingress")
    paths = {p["path"]: p["backend"]["service"] for rule in ingress["spec"]["rules"] for p in rule["http"]["paths"]}
    for service, (_, routes) in ROUTES.items():
        if service == "hub":
            continue  # only its public reads: test_kubernetes_ingress_keeps_hub_writes_internal
        for route in routes:
            owner = [p for p in paths if prefix_covers([p], route)]
            assert owner, f"the Ingress does not route {route}"
            assert paths[max(owner, key=len)]["name"] == service
    middlewares = {d["metadata"]["name"] for d in docs if d["kind"] == "Middleware"}
    annotation = ingress["metadata"]["annotations"]["traefik.ingress.kubernetes.io/router.middlewares"]
    for ref in annotation.split(","):
        assert ref.endswith("@kubernetescrd") and ref.split("@")[0].removeprefix("quark-") in middlewares


# The hub's public reads (quark_hub.settings.PUBLIC_PATHS) and what must never be on the gateway.
HUB_PUBLIC = ("/api/v1/hub/services", "/api/v1/hub/services/x", "/api/v1/hub/events", "/api/v1/hub/stream",
              "/api/v1/hub/.well-known/jwks.json", "/modules/discovery", "/hub", "/hub/static/dashboard.js")
HUB_INTERNAL = ("/api/v1/hub/modules/register", "/api/v1/hub/modules/blog/instances/i/heartbeat",
                "/api/v1/hub/traefik/config", "/api/v1/hub/token", "/api/v1/hub/clients", "/api/v1/hub/clients/c")


def _ingress_routes(path: str, ingress: dict[str, Any]) -> str | None:
    """The backend the Ingress sends `path` to (Kubernetes rules: longest match; Exact or Prefix by segment)."""
    best: tuple[int, str] | None = None
    for rule in ingress["spec"]["rules"]:
        for p in rule["http"]["paths"]:
            want, kind = p["path"], p["pathType"]
            hit = path == want if kind == "Exact" else prefix_covers([want], path)
            if hit and (best is None or len(want) > best[0]):
                best = (len(want), p["backend"]["service"]["name"])
    return best[1] if best else None


def test_kubernetes_ingress_keeps_hub_writes_internal() -> None:
    """Registry writes, Traefik's config, /token and /clients are for the cluster network only."""
    ingress = next(d for d in yaml_documents(DEPLOY / "k8s" / "ingress.yaml") if d["kind"] == "Ingress")
    for path in HUB_PUBLIC:
        assert _ingress_routes(path, ingress) == "hub", f"the Ingress does not route {path} to the hub"
    # Only the web client's catch-all "/" may match an internal path: it answers 404, the hub is never reached.
    for path in HUB_INTERNAL:
        assert _ingress_routes(path, ingress) in (None, "web"), f"the Ingress exposes {path}"  # web: the catch-all
    try:
        from quark_hub.settings import PUBLIC_PATHS
    except ImportError:
        return
    for path in PUBLIC_PATHS:
        assert _ingress_routes(path + ("x" if path.endswith("/") else ""), ingress) == "hub", path
