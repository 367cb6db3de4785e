"""Helpers of the fleet packaging tests: the repository's modules, DESIGN §3, and docker-compose.yml as Compose
itself would read it (YAML merge keys resolved, ${VAR:-default} interpolated)."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import re
import subprocess
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
DESIGN = REPO.parent / "shared" / "DESIGN.md"
COMPOSE_FILE = REPO / "docker-compose.yml"
ENV_EXAMPLE = REPO / ".env.example"
DEPLOY = REPO / "deploy"

# DESIGN §3 (the design of record; test_gateway checks this copy against ../shared/DESIGN.md when it is there).
ROUTES: dict[str, tuple[int, tuple[str, ...]]] = {
    "auth": (3001, ("/api/v1/auth",)),
    "hub": (3002, ("/api/v1/hub", "/modules/discovery")),
    "media": (3003, ("/api/v1/media",)),
    "blog": (3004, ("/api/v1/posts", "/api/v1/feed", "/api/v1/comments", "/api/v1/search")),
    "messaging": (3005, ("/api/v1/messages", "/api/v1/chats", "/api/v1/notifications", "/api/v1/messages/ws")),
    "ai": (3006, ("/api/v1/ai",)),
    "user": (3007, ("/api/v1/users",)),
    # DESIGN: "consumes quark.auth.email_requested only"; its pages are the dev mailbox (404 in prod) and the
    # interim confirmation pages until the web client serves them (services/mailer/quark_mailer/landing.py).
    "mailer": (3009, ("/dev/mail",)),
    "moderation": (3010, ("/api/v1/moderation",)),
}
# Modules this repository adds beyond DESIGN §3, each a departure explained in its issue's note: the moderation
# queue and audit log (#19) need a database and a consumer of five modules' events, which the web client (a BFF
# without a database) cannot be.
BEYOND_DESIGN = frozenset({"moderation"})
# docking order (quark_sdk.cli)
ALL_MODULES = ("hub", "auth", "user", "media", "blog", "messaging", "ai", "mailer", "moderation")
# Modules without a database of their own (no migrate job, no database role) and without Vault secrets:
# the web client keeps only browser sessions in Redis. It is in docker-compose.yml and quark-manager.sh;
# the Kubernetes manifests and Ingress carry it too (deploy/k8s/modules/web.yaml, "/" last); the Prometheus scrape list
# does not yet (ALL_MODULES does not).
STATELESS = ("web",)
DB_MODULES = tuple(m for m in ALL_MODULES if m not in STATELESS)
STATION_MODULES = (*ALL_MODULES, *STATELESS)

# The metric names quark_sdk.telemetry exports (test_observability checks this list against the SDK itself).
EXPORTED_METRICS = frozenset({
    "quark_http_requests_total",
    "quark_http_request_duration_seconds",
    "quark_http_requests_in_flight",
    "quark_events_published_total",
    "quark_events_consumed_total",
    "quark_event_handle_duration_seconds",
    "quark_event_delivery_lag_seconds",
    "quark_outbox_backlog",
    "quark_consumer_pending_messages",
    "quark_websocket_connections",
    "quark_hub_module_health",
})
# Traefik's own metrics the dashboard and the gateway alerts use (tests/fleet/test_prometheus.py scrapes a real
# Traefik and finds each of them).
TRAEFIK_METRICS = frozenset({
    "traefik_service_requests_total",
    "traefik_service_request_duration_seconds",
    "traefik_router_requests_total",
    "traefik_entrypoint_requests_total",
})


def folder_of(module: str) -> Path:
    return REPO / ("plugin-hub" if module == "hub" else f"services/{module}")


@dataclass(frozen=True)
class ModuleDir:
    name: str
    folder: Path
    manifest: dict[str, Any] | None

    @property
    def rel(self) -> str:
        return self.folder.relative_to(REPO).as_posix()

    @property
    def package(self) -> str | None:
        found = sorted(p.name for p in self.folder.glob("quark_*") if p.is_dir())
        return found[0] if found else None


def module_dirs() -> list[ModuleDir]:
    """Every module folder that exists now: plugin-hub/ and services/*/ (known names or any with a manifest)."""
    found: dict[str, ModuleDir] = {}
    candidates = [REPO / "plugin-hub", *sorted(p for p in (REPO / "services").glob("*") if p.is_dir())]
    for folder in candidates:
        if not folder.is_dir() or folder.name.startswith((".", "_")):
            continue
        manifest_file = folder / "module-manifest.yaml"
        manifest = yaml.safe_load(manifest_file.read_text()) if manifest_file.exists() else None
        if manifest is None and not any(folder.iterdir()):
            continue  # an empty folder someone just created
        name = (manifest or {}).get("name") or ("hub" if folder.name == "plugin-hub" else folder.name)
        found[name] = ModuleDir(name, folder, manifest)
    return [found[n] for n in sorted(found, key=lambda n: (ALL_MODULES.index(n) if n in ALL_MODULES else 99, n))]


# --------------------------------------------------------------------------- compose

_VAR = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?+])((?:[^{}]|\{[^{}]*\})*))?\}")


def interpolate(value: Any, env: Mapping[str, str]) -> Any:
    """Compose-style interpolation: ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?err}, ${VAR:+alt}, $$."""
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        name, op, arg = m.group(1), m.group(2), m.group(3)
        have = env.get(name)
        if op is None:
            return have or ""
        if op == ":-":
            return have if have else interpolate(arg, env)
        if op == "-":
            return have if have is not None else interpolate(arg, env)
        if op in (":?", "?"):
            if have is None or (op == ":?" and not have):
                raise KeyError(f"required variable {name} is not set: {arg}")
            return have
        if op == ":+":
            return interpolate(arg, env) if have else ""
        return have if have is not None else ""

    return _VAR.sub(sub, value)


def load_compose_raw(path: Path = COMPOSE_FILE) -> dict[str, Any]:
    return yaml.safe_load(path.read_text())


def load_compose(env: Mapping[str, str] | None = None, path: Path = COMPOSE_FILE, *,
                 fill_required: bool = True) -> dict[str, Any]:
    """The compose file after interpolation (with no variables set: every default applies).

    Required variables (${VAR:?…}, no default) get a `test-only-…` value unless `env` sets them, as an
    operator's .env must; with fill_required=False a missing one raises KeyError, as Compose refuses to run."""
    raw = load_compose_raw(path)
    values = dict(env or {})
    if fill_required:
        for var in compose_required(path):
            values[var] = values.get(var) or f"test-only-{var.lower().replace('_', '-')}"
    return {k: v for k, v in interpolate(raw, values).items() if not k.startswith("x-")}


def _walk_strings(v: Any) -> list[str]:
    if isinstance(v, dict):
        return [s for x in v.values() for s in _walk_strings(x)]
    if isinstance(v, list):
        return [s for x in v for s in _walk_strings(x)]
    return [v] if isinstance(v, str) else []


def compose_required(path: Path = COMPOSE_FILE) -> dict[str, str]:
    """VAR -> error message of every ${VAR:?message} (a variable with no default that must be set)."""
    out: dict[str, str] = {}
    for s in _walk_strings(load_compose_raw(path)):
        for m in _VAR.finditer(s):
            if m.group(2) in (":?", "?"):
                out.setdefault(m.group(1), m.group(3) or "")
    return out


def compose_defaults(path: Path = COMPOSE_FILE) -> dict[str, str]:
    """VAR -> default of every ${VAR:-default} in the compose file's values."""
    out: dict[str, str] = {}

    def walk(v: Any) -> None:
        if isinstance(v, dict):
            for x in v.values():
                walk(x)
        elif isinstance(v, list):
            for x in v:
                walk(x)
        elif isinstance(v, str):
            for m in _VAR.finditer(v):
                if m.group(2) in (":-", "-"):
                    out.setdefault(m.group(1), m.group(3))

    walk(load_compose_raw(path))
    return out


def parse_env_file(path: Path = ENV_EXAMPLE) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        assert sep, f"{path.name}: not KEY=VALUE: {line!r}"
        out[key.strip()] = value.strip()
    return out


def environment(service: Mapping[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {str(k): "" if v is None else str(v) for k, v in env.items()}


def depends_on(service: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    deps = service.get("depends_on") or {}
    if isinstance(deps, list):
        return {d: {"condition": "service_started"} for d in deps}
    return dict(deps)


def is_job(service: Mapping[str, Any]) -> bool:
    """A one-shot container (init / migrate job): runs to completion, never restarted."""
    return str(service.get("restart", "no")) == "no"


def yaml_documents(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def _requires_database(module: ModuleDir) -> bool:
    requires = (module.manifest or {}).get("requires") or {}
    if isinstance(requires, list):  # the seeds' list form
        return any(item == "database" or (isinstance(item, dict) and "database" in item) for item in requires)
    return bool(requires.get("database"))


def load_init_vault() -> ModuleType:
    """deploy/vault/init_vault.py (a script, not a package) as a module."""
    spec = importlib.util.spec_from_file_location("init_vault", DEPLOY / "vault" / "init_vault.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@contextlib.contextmanager
def compose_postgres(services: Mapping[str, Mapping[str, Any]], data_dir: Path) -> Iterator[Any]:
    """A PostgreSQL like the compose `postgres` service: init-databases.sql (its initdb script) run with that
    service's environment, and password (SCRAM) authentication for every role but the superuser, so a module
    connecting with a wrong role or password is refused as in the container."""
    from quark_sdk.embedded import EmbeddedPostgres

    pg = EmbeddedPostgres(data_dir).start()
    try:
        hba = pg.data_dir / "pg_hba.conf"
        hba.write_text("local all postgres trust\nhost all postgres 127.0.0.1/32 trust\n"
                       "host all all 127.0.0.1/32 scram-sha-256\n")
        pg.psql("SELECT pg_reload_conf()")
        env = {**os.environ, **environment(services["postgres"])}
        done = subprocess.run([str(EmbeddedPostgres.bin_dir() / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1",
                               "-d", pg.url, "-f", str(REPO / "init-databases.sql")], capture_output=True, text=True,
                              env=env, timeout=120)
        assert done.returncode == 0, done.stderr
        yield pg
    finally:
        pg.stop()


# Modules made by `quark create` (not in DESIGN §3's table): the fleet files carry them too (quark_sdk.fleetgen).
EXTRA_MODULES = tuple(m.name for m in module_dirs() if m.name not in STATION_MODULES)
EXTRA_DB_MODULES = tuple(m.name for m in module_dirs() if m.name in EXTRA_MODULES and _requires_database(m))
