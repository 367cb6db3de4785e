"""docker-compose.yml: valid against the Compose Specification, and consistent with the modules it runs.

The schema is the Compose Specification's own JSON schema (compose-spec/compose-spec, Apache-2.0) as
vendored and kept current by the pinned `check-jsonschema` package
(check_jsonschema/builtin_schemas/vendor/compose-spec.json, licence beside it in vendor/licenses/).
"""

from __future__ import annotations

import importlib
import importlib.resources
import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import pytest
import yaml
from fleetkit import (
    ALL_MODULES,
    COMPOSE_FILE,
    DB_MODULES,
    DEPLOY,
    REPO,
    ROUTES,
    STATELESS,
    STATION_MODULES,
    compose_defaults,
    compose_required,
    depends_on,
    environment,
    folder_of,
    interpolate,
    is_job,
    load_compose,
    load_compose_raw,
    module_dirs,
    parse_env_file,
)

INFRA = ("traefik", "postgres", "redis", "nats", "minio", "vault", "otel-collector", "tempo", "loki",
         "prometheus", "grafana")
PUBLISHED_OK = {"traefik", "grafana", "mailpit"}  # the gateway; Grafana, Traefik's and Mailpit's UIs (127.0.0.1)
# Images that cannot run any in-container probe (distroless: no shell, no wget/curl, no health subcommand at the
# pinned version): no health check, and whoever depends on them waits for service_started (docs/operations.md).
NO_PROBE = {"tempo", "loki"}
# Tools each infrastructure health check runs, and why the image has them.
PROBE_TOOLS = {
    "traefik": "traefik",        # its own `traefik healthcheck`
    "postgres": "pg_isready",
    "redis": "redis-cli",
    "nats": "wget",              # the -alpine tag: busybox
    "minio": "mc",
    "vault": "vault",
    "otel-collector": "wget",    # deploy/otel/Dockerfile puts the collector on busybox for this
    "prometheus": "wget",        # prom/prometheus is built on busybox
    "grafana": "wget",           # grafana/grafana is alpine-based
    "ollama": "ollama",
    "mailpit": "/mailpit",       # its own `mailpit readyz` (the image is the binary at /)
}


def compose_schema() -> dict[str, Any]:
    vendor = importlib.resources.files("check_jsonschema.builtin_schemas.vendor")
    return json.loads((vendor / "compose-spec.json").read_text())


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load_compose()


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


@pytest.mark.parametrize("path", [COMPOSE_FILE, DEPLOY / "compose" / "debug-ports.yml"], ids=lambda p: p.name)
def test_compose_file_matches_the_compose_specification(path: Path) -> None:
    schema = compose_schema()
    validator = jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker())
    for variant in (load_compose(path=path), load_compose(parse_env_file(), path=path)):
        errors = sorted(validator.iter_errors(variant), key=lambda e: list(e.absolute_path))
        assert not errors, "\n".join(f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors[:10])


def test_schema_really_rejects_a_broken_file() -> None:
    validator = jsonschema.Draft202012Validator(compose_schema())
    bad = {"services": {"x": {"image": "a:1", "depends_on": {"y": {"condition": "whenever"}}, "restrat": "no"}}}
    assert list(validator.iter_errors(bad))


def test_every_module_is_in_compose_with_its_migrate_job(services: dict[str, dict[str, Any]]) -> None:
    for name in STATION_MODULES:
        assert name in services, f"compose lacks the {name} module"
        assert (f"{name}-migrate" in services) == (name in DB_MODULES), f"{name}-migrate: only with a database"
    for module in module_dirs():
        assert module.name in services, f"{module.rel} has no service in docker-compose.yml"
    for name in INFRA:
        assert name in services, f"compose lacks {name}"


def test_modules_are_built_from_their_dockerfiles(services: dict[str, dict[str, Any]]) -> None:
    for name in STATION_MODULES:
        for svc in (name, f"{name}-migrate") if name in DB_MODULES else (name,):
            build = services[svc].get("build")
            assert build, f"{svc} is not built from a Dockerfile"
            assert build["context"] == "."
            assert build["dockerfile"] == f"{folder_of(name).relative_to(REPO).as_posix()}/Dockerfile"
        if name in DB_MODULES:
            assert services[f"{name}-migrate"]["command"] == ["migrate", name]
        assert services[name].get("command") is None  # the image's CMD: quark serve <module>


def test_depends_on_targets_exist_and_wait_for_health(services: dict[str, dict[str, Any]]) -> None:
    for name, svc in services.items():
        for dep, spec in depends_on(svc).items():
            assert dep in services, f"{name} depends on unknown service {dep}"
            cond = spec.get("condition")
            want = "service_completed_successfully" if is_job(services[dep]) else "service_healthy"
            if dep in NO_PROBE:
                want = "service_started"
            assert cond == want, f"{name} -> {dep}: condition {cond}, expected {want}"


def test_dependency_graph_has_no_cycle(services: dict[str, dict[str, Any]]) -> None:
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        if state.get(node) == 1:
            raise AssertionError("dependency cycle: " + " -> ".join([*path, node]))
        if state.get(node) == 2:
            return
        state[node] = 1
        for dep in depends_on(services[node]):
            visit(dep, [*path, node])
        state[node] = 2

    for name in services:
        visit(name, [])


def test_modules_wait_for_their_infrastructure(services: dict[str, dict[str, Any]]) -> None:
    for name in STATION_MODULES:
        deps = depends_on(services[name])
        migrate = (f"{name}-migrate",) if name in DB_MODULES else ()
        for infra in ("postgres", "redis", "nats", "vault-init", *migrate):
            assert infra in deps, f"{name} does not wait for {infra}"
        if name != "hub":
            assert "hub" in deps, f"{name} should dock after the hub is up"
    assert "minio-init" in depends_on(services["media"])
    assert depends_on(services["ai"])["ollama"].get("required") is False  # only with --profile ai
    assert depends_on(services["traefik"]) == {"hub": {"condition": "service_healthy"}}


def test_long_running_containers_have_healthchecks_and_restart(services: dict[str, dict[str, Any]]) -> None:
    for name, svc in services.items():
        if is_job(svc):
            continue
        assert svc.get("restart") == "unless-stopped", f"{name}: restart policy"
        hc = svc.get("healthcheck")
        if name in NO_PROBE:
            assert hc == {"disable": True}, f"{name}: its image cannot run a probe; disable the health check"
            continue
        assert hc and hc.get("test") and not hc.get("disable"), f"{name} has no healthcheck"


def test_infrastructure_healthchecks_run_a_tool_the_image_has(services: dict[str, dict[str, Any]]) -> None:
    """A probe whose program is missing never passes and blocks every service_healthy dependant for good."""
    for name, tool in PROBE_TOOLS.items():
        test = services[name]["healthcheck"]["test"]
        assert test[0] in ("CMD", "CMD-SHELL"), f"{name}: {test[0]}"
        program = test[1] if test[0] == "CMD" else test[1].split()[0]
        assert program == tool, f"{name}: probe runs {program}, expected {tool}"
        if test[0] == "CMD-SHELL":
            assert name == "postgres", f"{name}: use the exec form; only postgres' Debian image surely has /bin/sh"
    otel = (DEPLOY / "otel" / "Dockerfile").read_text()
    assert re.search(r"^FROM busybox:", otel, re.M), "the collector's wget probe needs its busybox base"
    for name in NO_PROBE:
        assert "wget" not in json.dumps(services[name].get("healthcheck", {}))
        for other, svc in services.items():
            spec = depends_on(svc).get(name)
            assert spec is None or spec["condition"] == "service_started", f"{other} waits on {name}'s health"
    # The readiness of the unprobed ones is still checked, from the collector, by quark-manager.sh health.
    manager = (REPO / "quark-manager.sh").read_text()
    for name, port in (("tempo", 3200), ("loki", 3100)):
        assert f"http://{name}:{port}/ready" in manager


def test_module_healthchecks_use_python_on_the_manifest_port(services: dict[str, dict[str, Any]]) -> None:
    for name in ALL_MODULES:
        test = services[name]["healthcheck"]["test"]
        port = ROUTES[name][0]
        assert test[:3] == ["CMD", "python", "-c"], f"{name}: slim images have no curl; use python urllib"
        assert f"http://127.0.0.1:{port}/health" in test[3]
        assert services[name]["expose"] == [str(port)]


def test_ports_match_the_manifests(services: dict[str, dict[str, Any]]) -> None:
    for name, (port, _) in ROUTES.items():
        env = environment(services[name])
        assert env[f"QUARK_{name.upper()}_INSTANCE_URL"] == f"http://{name}:{port}"
    for module in module_dirs():
        if module.manifest is None or module.name not in ROUTES:
            continue
        assert module.manifest["port"] == ROUTES[module.name][0], f"{module.rel}: port differs from DESIGN §3"


def test_only_the_gateway_and_dashboards_are_published(services: dict[str, dict[str, Any]]) -> None:
    for name, svc in services.items():
        ports = svc.get("ports") or []
        if name not in PUBLISHED_OK:
            assert not ports, f"{name} publishes {ports}; only the gateway and dashboards may"
    gateway = services["traefik"]["ports"]
    assert gateway[:2] == ["8080:80", "8443:8443"]  # HTTP and TLS
    assert all(p.startswith("127.0.0.1:") for p in gateway[2:]), "the Traefik dashboard must stay on localhost"
    assert all(p.startswith("127.0.0.1:") for p in services["grafana"]["ports"])
    assert services["mailpit"]["ports"] == ["127.0.0.1:8025:8025"], "Mailpit's UI must stay on localhost"


def test_images_are_pinned_to_exact_versions(services: dict[str, dict[str, Any]]) -> None:
    for name, svc in services.items():
        image = svc.get("image")
        assert image, f"{name} has no image name"
        repo, _, tag = image.rpartition(":")
        assert repo and tag and tag != "latest", f"{name}: image {image} is not pinned"
        # semver x.y.z, PostgreSQL's x.y, or MinIO's RELEASE.<timestamp>: never a moving major-only tag
        exact = re.match(r"v?\d+\.\d+\.\d+|\d+\.\d+-|RELEASE\.\d{4}-\d\d-\d\dT", tag)
        assert exact, f"{name}: {image} is not an exact version"
    otel = (DEPLOY / "otel" / "Dockerfile").read_text()
    for line in otel.splitlines():
        if line.startswith("FROM"):
            assert re.search(r":\d+\.\d+\.\d+", line), f"deploy/otel/Dockerfile: unpinned {line}"


def test_data_lives_in_named_volumes(compose: dict[str, Any]) -> None:
    declared = set(compose["volumes"])
    used: set[str] = set()
    for name, svc in compose["services"].items():
        for vol in svc.get("volumes") or []:
            source = vol.split(":", 1)[0] if isinstance(vol, str) else vol.get("source", "")
            if source.startswith(("./", "/")):
                continue  # configuration bind mounts (read-only) and the Docker log directory
            assert source in declared, f"{name} mounts undeclared volume {source}"
            used.add(source)
    for stateful, volume in {"postgres": "postgres-data", "redis": "redis-data", "nats": "nats-data",
                             "minio": "minio-data", "prometheus": "prometheus-data", "grafana": "grafana-data",
                             "loki": "loki-data", "tempo": "tempo-data"}.items():
        assert any(str(v).startswith(volume + ":") for v in compose["services"][stateful]["volumes"]), stateful
    assert declared == used, f"unused volumes: {declared - used}"


def test_bind_mounted_files_exist_and_are_read_only(services: dict[str, dict[str, Any]]) -> None:
    for name, svc in services.items():
        for vol in svc.get("volumes") or []:
            if not isinstance(vol, str) or not vol.startswith("./"):
                continue
            source, _target, *mode = vol.split(":")
            assert (REPO / source).exists(), f"{name} mounts missing {source}"
            assert mode == ["ro"], f"{name}: {source} should be mounted read-only"


def test_nats_runs_jetstream_on_a_volume(services: dict[str, dict[str, Any]]) -> None:
    cmd = services["nats"]["command"]
    assert "-js" in cmd and cmd[cmd.index("-sd") + 1] == "/data"
    assert "nats-data:/data" in services["nats"]["volumes"]


def test_postgres_runs_init_databases_sql(services: dict[str, dict[str, Any]]) -> None:
    pg = services["postgres"]
    assert "./init-databases.sql:/docker-entrypoint-initdb.d/10-init-databases.sql:ro" in pg["volumes"]
    env = environment(pg)
    sql = (REPO / "init-databases.sql").read_text()
    for var in sorted(set(re.findall(r"\\getenv \w+ (\w+)", sql))):
        assert env.get(var), f"postgres container lacks {var}, which init-databases.sql reads"


def test_postgres_admits_every_module_pool_at_its_largest(services: dict[str, dict[str, Any]]) -> None:
    """The connection budget (docs/operations.md): each module's pool full, blog's read pool, and room to spare."""
    from quark_blog.settings import BlogSettings
    from quark_sdk.config import ServiceSettings

    cmd = services["postgres"]["command"]
    max_connections = int(next(a for a in cmd if a.startswith("max_connections=")).split("=", 1)[1])
    fields = ServiceSettings.model_fields
    per_module = (fields["db_pool_size"].default or 0) + (fields["db_max_overflow"].default or 0)
    budget = len(DB_MODULES) * per_module + BlogSettings.model_fields["read_pool_size"].default
    assert budget + 10 + 3 <= max_connections, (budget, max_connections)  # migrations/admin, superuser reserve


def test_dev_defaults_are_documented_in_env_example() -> None:
    defaults = compose_defaults()
    required = compose_required()
    example = parse_env_file()
    for var, default in defaults.items():
        assert var in example, f"{var} (compose default {default!r}) is missing from .env.example"
        assert example[var] == default, f"{var}: .env.example says {example[var]!r}, compose {default!r}"
    for var in required:
        assert var not in defaults, f"{var} is required somewhere and has a default elsewhere"
        assert var in example and example[var] == "", f".env.example must list {var} empty (the operator sets it)"
    for var, value in example.items():
        if var in required:
            continue
        assert var in defaults, f".env.example sets {var}, which docker-compose.yml never reads"
        if re.search(r"PASSWORD|SECRET|TOKEN", var):
            assert value.startswith("dev-only-"), f"{var}: dev defaults must look like dev-only-…"


def test_every_secret_in_compose_is_a_variable() -> None:
    """No password, secret or token is written into docker-compose.yml: each comes from ${VAR:-dev-only-…}."""
    marked = {var: f"<{var}>" for var in [*compose_defaults(), *compose_required()]}
    checked = 0
    for name, svc in load_compose(marked)["services"].items():
        for key, value in environment(svc).items():
            if re.search(r"PASSWORD|SECRET|TOKEN|REDISCLI_AUTH", key) and not key.endswith("_ROLE_ID"):
                assert re.fullmatch(r"<\w+>", value), f"{name}: {key} is a literal, not a variable"
                checked += 1
            for m in re.finditer(r"://[^/@]*:([^@/]+)@", value):
                assert re.fullmatch(r"<\w+>", m.group(1)), f"{name}: {key} has a literal password in a URL"
                checked += 1
    assert checked > 20


def test_the_registration_token_is_required_and_reaches_every_module() -> None:
    """No dev default: Compose refuses to run without it (the hub would refuse to start in prod anyway)."""
    assert "QUARK_HUB_REGISTRATION_TOKEN" in compose_required()
    assert ".env" in compose_required()["QUARK_HUB_REGISTRATION_TOKEN"]
    with pytest.raises(KeyError, match="QUARK_HUB_REGISTRATION_TOKEN"):
        load_compose(fill_required=False)
    with pytest.raises(KeyError, match="QUARK_HUB_REGISTRATION_TOKEN"):
        load_compose(parse_env_file(), fill_required=False)  # .env.example copied as-is: still refused
    services = load_compose({"QUARK_HUB_REGISTRATION_TOKEN": "s3cret-token"})["services"]
    for name in ALL_MODULES:
        for svc in (name, f"{name}-migrate") if name in DB_MODULES else (name,):
            assert environment(services[svc])["QUARK_HUB_REGISTRATION_TOKEN"] == "s3cret-token", svc


def test_rate_limits_see_real_client_addresses_behind_traefik(compose: dict[str, Any]) -> None:
    """A fixed subnet and gateway address; the hub believes X-Forwarded-For from Traefik only, auth the header
    Traefik appends (its web entrypoint drops forwarded headers from clients)."""
    import ipaddress

    (pool,) = compose["networks"]["default"]["ipam"]["config"]
    subnet, dynamic = ipaddress.ip_network(pool["subnet"]), ipaddress.ip_network(pool["ip_range"])
    services = compose["services"]
    gateway = ipaddress.ip_address(services["traefik"]["networks"]["default"]["ipv4_address"])
    assert gateway in subnet and dynamic.subnet_of(subnet)  # type: ignore[arg-type]
    assert gateway not in dynamic, "the gateway's static address must be outside the dynamic range"
    for name, svc in services.items():
        assert set(svc.get("networks") or {"default": None}) == {"default"}, f"{name} is on another network"
    trusted = json.loads(environment(services["hub"])["QUARK_HUB_TRUSTED_PROXIES"])
    assert trusted == [str(gateway)]
    assert environment(services["auth"])["QUARK_AUTH_TRUST_PROXY_HEADERS"] == "true"
    static = yaml.safe_load((DEPLOY / "traefik" / "traefik.yml").read_text())
    assert static["entryPoints"]["web"]["forwardedHeaders"]["insecure"] is False
    assert "trustedIPs" not in static["entryPoints"]["web"]["forwardedHeaders"]
    for name in services:  # nobody but the gateway can reach auth or the hub from outside
        if name in ("auth", "hub"):
            assert not services[name].get("ports")


def test_hub_settings_trust_the_gateway_from_the_compose_environment(
        services: dict[str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("quark_hub")
    import os

    from quark_hub.ratelimit import client_address
    from quark_hub.settings import HubSettings

    for var in list(os.environ):
        if var.startswith(("QUARK_", "OTEL_")):
            monkeypatch.delenv(var)
    for key, value in environment(services["hub"]).items():
        monkeypatch.setenv(key, value)
    settings = HubSettings.load()
    gateway = services["traefik"]["networks"]["default"]["ipv4_address"]
    assert client_address(gateway, "203.0.113.7", settings.trusted_proxies) == "203.0.113.7"
    assert client_address("172.30.99.200", "203.0.113.7", settings.trusted_proxies) == "172.30.99.200"
    assert settings.registration_token is not None


def test_interpolation_with_a_real_env_file_changes_every_password() -> None:
    env = {k: (f"prod-{k.lower()}" if k.endswith(("PASSWORD", "SECRET_ID", "SECRET_KEY", "TOKEN")) else v)
           for k, v in parse_env_file().items()}
    text = json.dumps(load_compose(env))
    assert "dev-only-" not in text


# --------------------------------------------------------------------------- settings of each module


def _settings_class(module_name: str, folder: Path) -> type | None:
    from quark_sdk.config import ServiceSettings

    package = next((p.name for p in folder.glob("quark_*") if (p / "settings.py").exists()), None)
    if package is None:
        return None
    mod = importlib.import_module(f"{package}.settings")  # every module of the tree is installed (make install)
    classes = [v for v in vars(mod).values()
               if isinstance(v, type) and issubclass(v, ServiceSettings) and v is not ServiceSettings
               and v.__module__ == mod.__name__]
    assert len(classes) == 1, f"{package}.settings should define exactly one ServiceSettings subclass"
    return classes[0]


@pytest.mark.parametrize("module", [m for m in module_dirs() if m.name in ALL_MODULES], ids=lambda m: m.name)
def test_module_settings_load_from_the_compose_environment(
        module: Any, services: dict[str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch) -> None:
    """Everything a module's settings need is provided, and points at the compose infrastructure."""
    settings_cls = _settings_class(module.name, module.folder)
    if settings_cls is None:
        pytest.skip(f"{module.rel} has no settings module yet")
    import os

    for var in list(os.environ):
        if var.startswith(("QUARK_", "OTEL_")):
            monkeypatch.delenv(var)
    env = environment(services[module.name])
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    settings = settings_cls.load()
    port, _ = ROUTES[module.name]
    assert settings.env == "prod"
    assert settings.port == port
    assert settings.host == "0.0.0.0"
    assert settings.public_instance_url() == f"http://{module.name}:{port}"
    if module.name in DB_MODULES:
        db = urlsplit(settings.service_database_url(module.name.replace("-", "_")))
        assert (db.hostname, db.port, db.path, db.username) == ("postgres", 5432, f"/{module.name}",
                                                                f"quark_{module.name}")
        assert db.password and db.password.startswith("dev-only-")
    assert urlsplit(settings.redis_url).hostname == "redis"
    assert urlsplit(settings.nats_url).hostname == "nats"
    assert settings.hub_url == "http://hub:3002"
    assert settings.auth_jwks_url == "http://auth:3001/api/v1/auth/.well-known/jwks.json"
    assert settings.hub_jwks_url == "http://hub:3002/api/v1/hub/.well-known/jwks.json"
    from quark_sdk.secrets import VaultSecrets, load_secret_store

    if module.name in STATELESS:
        assert "QUARK_VAULT_ROLE_ID" not in env
        return
    store = load_secret_store(env)
    assert isinstance(store, VaultSecrets) and store.addr == "http://vault:8200"
    assert env["QUARK_VAULT_ROLE_ID"] == f"quark-{module.name}"
    manifest = module.manifest or {}
    if manifest.get("requires", {}).get("storage"):
        assert env.get(f"QUARK_{module.name.upper()}_STORAGE_URL", "").startswith("s3://")


def test_station_wide_environment_is_the_same_for_every_module(services: dict[str, dict[str, Any]]) -> None:
    shared = ("QUARK_ENV", "QUARK_REDIS_URL", "QUARK_NATS_URL", "QUARK_HUB_URL", "QUARK_AUTH_JWKS_URL",
              "QUARK_HUB_JWKS_URL", "QUARK_VAULT_ADDR", "OTEL_EXPORTER_OTLP_ENDPOINT", "QUARK_GATEWAY_URL")
    first = environment(services["hub"])
    for name in ALL_MODULES:
        env = environment(services[name])
        for var in shared:
            assert env.get(var) == first[var], f"{name}: {var} differs"
        if name in DB_MODULES:
            assert env == environment(services[f"{name}-migrate"]), f"{name}-migrate must run with {name}'s settings"
    assert environment(services["media"])["QUARK_MEDIA_STORAGE_URL"].startswith("s3://quark-media:")
    assert environment(services["ai"])["QUARK_AI_OLLAMA_URL"] == "http://ollama:11434"


def test_vault_and_minio_init_jobs(services: dict[str, dict[str, Any]]) -> None:
    init = services["vault-init"]
    assert init["entrypoint"] == ["python", "/deploy/vault/init_vault.py"]
    env = environment(init)
    for name in DB_MODULES:
        module_env = environment(services[name])
        assert env[f"QUARK_{name.upper()}_VAULT_SECRET_ID"] == module_env["QUARK_VAULT_SECRET_ID"]
    minio = environment(services["minio-init"])
    storage = urlsplit(environment(services["media"])["QUARK_MEDIA_STORAGE_URL"])
    expected = (minio["QUARK_MEDIA_S3_ACCESS_KEY"], minio["QUARK_MEDIA_S3_SECRET_KEY"])
    assert (storage.username, storage.password) == expected
    assert storage.path == "/" + minio["QUARK_MEDIA_BUCKET"]


def test_ai_profile_adds_ollama(services: dict[str, dict[str, Any]]) -> None:
    assert services["ollama"]["profiles"] == ["ai"]
    assert services["ollama-pull"]["profiles"] == ["ai"]
    assert all(not svc.get("profiles") for n, svc in services.items() if n not in ("ollama", "ollama-pull"))


def test_interpolation_helper() -> None:
    assert interpolate("${A:-x}-${B-y}-$${C}", {"A": "", "B": ""}) == "x--${C}"
    with pytest.raises(KeyError):
        interpolate("${NEEDED:?set it}", {})
    assert load_compose_raw()["name"] == "quark"
    assert yaml.safe_load("a: &x {b: 1}\nc: {<<: *x, d: 2}") == {"a": {"b": 1}, "c": {"b": 1, "d": 2}}
