"""`quark install | modules enable/disable | upgrade | remove`: docking as a live operation on a running station.

The station (`quark dev`, embedded or `--fleet`) writes `<data_dir>/station.json` with its gateway and hub
URLs. These commands act on it through the hub's lifecycle API (docs/hub.md, "Module lifecycle"), with the
hub's own service credential: a short-lived service token signed with the hub's key from the station's secret
store (on the station's host only), or `QUARK_ADMIN_TOKEN` (an admin user's access token) when set.

Installing runs in fresh interpreters (`pip install`, then `quark provision NAME`): a package installed a
moment ago is importable only by a new process. An installed module is docked at once as its own process
(`quark serve NAME`, logs and pid under `<data_dir>/docked/`); the station serves it in-process from its next
start on, since it is then an installed module like the others.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import httpx

from quark_sdk.cli import CliError, installed_modules

STATION_FILE = "station.json"
DOCKED_DIR = "docked"


# --------------------------------------------------------------------------- the running station


def data_dir(args: argparse.Namespace) -> Path:
    return Path(getattr(args, "data_dir", None) or os.environ.get("QUARK_DATA_DIR", ".quark")).resolve()


def write_station(directory: Path, **info: Any) -> None:
    """Called by `quark dev`: where this station's gateway and hub answer."""
    from quark_sdk.supervisor import write_json_atomic

    write_json_atomic(directory / STATION_FILE, {**info, "pid": os.getpid(), "started_at": time.time()})


def read_station(directory: Path) -> dict[str, Any]:
    try:
        station: dict[str, Any] = json.loads((directory / STATION_FILE).read_text())
    except (OSError, ValueError):
        raise CliError(f"no running station in {directory} (start one: make run, or quark dev --fleet)") from None
    try:
        os.kill(int(station["pid"]), 0)
    except (ProcessLookupError, KeyError, ValueError):
        raise CliError(f"the station of {directory} is not running (start it: make run)") from None
    except PermissionError:
        pass
    return station


def admin_token(directory: Path) -> str:
    """QUARK_ADMIN_TOKEN, or a 2-minute service token as the hub itself, signed with its key (secret store)."""
    explicit = os.environ.get("QUARK_ADMIN_TOKEN")
    if explicit:
        return explicit
    from quark_sdk.auth import SigningKeySet
    from quark_sdk.secrets import load_secret_store

    raw = load_secret_store(os.environ, directory / "secrets").get("hub/signing-keys")
    if not raw or "keyset" not in raw:
        raise CliError("the hub's signing key is not in this station's secret store; set QUARK_ADMIN_TOKEN "
                       "to an admin's access token")
    keys = SigningKeySet.from_dict(json.loads(raw["keyset"]))
    now = int(time.time())
    return keys.sign({"iss": "quark-hub", "sub": "hub", "aud": "quark", "scope": "", "token_use": "service",
                      "client_id": "hub", "iat": now, "nbf": now, "exp": now + 120, "jti": uuid.uuid4().hex})


class Hub:
    """The hub's lifecycle API, as an admin."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.station = read_station(directory)
        self.url = str(self.station["hub"]).rstrip("/")
        self.gateway = str(self.station["gateway"]).rstrip("/")
        self.http = httpx.Client(base_url=self.url, timeout=10,
                                 headers={"Authorization": f"Bearer {admin_token(directory)}"})

    def call(self, method: str, path: str, **kw: Any) -> dict[str, Any]:
        resp = self.http.request(method, f"/api/v1/hub/modules/{path}", **kw)
        if resp.status_code >= 400:
            try:
                detail = resp.json().get("detail", resp.text)
            except ValueError:
                detail = resp.text
            raise CliError(f"hub: {detail} ({resp.status_code})")
        data: dict[str, Any] = resp.json()
        return data

    def lifecycle(self, name: str) -> dict[str, Any]:
        return self.call("GET", f"{name}/lifecycle")

    def prefixes(self, name: str) -> list[str]:
        """The API prefixes the docked module exposes (empty when it is not docked right now)."""
        resp = self.http.get("/api/v1/hub/services", params={"name": name})
        if resp.status_code >= 400:
            return []
        return sorted({p for m in resp.json().get("items", []) if m.get("name") == name
                       for p in m.get("api", []) if p != "/"})

    def wait(self, name: str, done: Any, what: str, timeout: float = 60) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            view = self.lifecycle(name)
            if done(view):
                return view
            if time.monotonic() > deadline:
                raise CliError(f"{name}: {what} did not happen within {timeout:.0f}s")
            time.sleep(0.2)


# --------------------------------------------------------------------------- helpers


def _run(cmd: list[str], what: str, env: dict[str, str] | None = None) -> str:
    res = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if res.returncode != 0:
        tail = "\n".join((res.stderr or res.stdout).strip().splitlines()[-8:])
        raise CliError(f"{what} failed:\n{tail}")
    return res.stdout


def _manifests() -> dict[str, dict[str, Any]]:
    """Installed modules' manifests, read by a fresh interpreter (sees packages installed a moment ago)."""
    out = _run([sys.executable, "-m", "quark_sdk.cli", "modules", "--json"], "listing the modules")
    return {m["name"]: m for m in json.loads(out)}


def is_ref(source: str) -> bool:
    """`package.module:attr`: a module importable as it is (no pip), as for `quark dev --with`."""
    return ":" in source and "://" not in source and not source.startswith("git@") and not Path(source).exists()


def manifest_of_ref(ref: str) -> dict[str, Any]:
    code = ("import json, sys; from quark_sdk.cli import load_module; "
            "print(json.dumps(load_module(sys.argv[1]).manifest().model_dump(mode='json')))")
    data: dict[str, Any] = json.loads(_run([sys.executable, "-c", code, ref], f"loading {ref}"))
    return data


def pip_install(source: str, *, upgrade: bool = False) -> None:
    target = source
    if source.startswith(("https://", "git@", "ssh://")) and not source.startswith("git+") and (
            source.endswith(".git") or "github.com" in source or "gitlab" in source):
        target = f"git+{source}"
    elif Path(source).exists():
        target = str(Path(source).resolve())
    cmd = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    cmd += ["--upgrade", "--force-reinstall", "--no-deps"] if upgrade else []
    _run([*cmd, target], f"pip install {source}")


def _station_env(directory: Path, station: dict[str, Any]) -> dict[str, str]:
    """What a module process beside the station needs: the station's servers, its hub and gateway."""
    env = dict(os.environ)
    env.setdefault("QUARK_DATA_DIR", str(directory))
    env.setdefault("QUARK_HUB_URL", str(station["hub"]))
    env.setdefault("QUARK_GATEWAY_URL", str(station["gateway"]))
    env.setdefault("QUARK_HUB_JWKS_URL", f"{station['hub']}/api/v1/hub/.well-known/jwks.json")
    auth = station.get("auth", station["gateway"])
    env.setdefault("QUARK_AUTH_JWKS_URL", f"{auth}/api/v1/auth/.well-known/jwks.json")
    return env


def dock_process(directory: Path, station: dict[str, Any], ref: str, version: str, *,
                 name: str | None = None) -> tuple[int, int]:
    """Start `quark serve REF` detached on a free port; (pid, port). Its pid file lets remove/upgrade stop it."""
    from quark_sdk.embedded import free_port

    name = name or ref
    port = free_port()
    docked = directory / DOCKED_DIR
    docked.mkdir(parents=True, exist_ok=True)
    log = open(docked / f"{name}-{version}.log", "ab")  # noqa: SIM115 - handed to the child
    proc = subprocess.Popen(
        [sys.executable, "-m", "quark_sdk.cli", "serve", ref, "--port", str(port), "--host", "127.0.0.1",
         "--no-migrate"], env=_station_env(directory, station), stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True)
    (docked / f"{name}-{version}.json").write_text(json.dumps({"pid": proc.pid, "port": port, "version": version}))
    return proc.pid, port


def stop_docked(directory: Path, name: str, keep_version: str | None = None, grace: float = 20) -> list[str]:
    """SIGTERM the processes `quark install/upgrade` started for `name` (but `keep_version`); uvicorn lets the
    requests in flight finish. Returns the versions stopped."""
    stopped = []
    for pidfile in sorted((directory / DOCKED_DIR).glob(f"{name}-*.json")):
        info = json.loads(pidfile.read_text())
        if info.get("version") == keep_version:
            continue
        pid = int(info["pid"])
        try:
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + grace
            while time.monotonic() < deadline:
                os.kill(pid, 0)
                time.sleep(0.1)
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        pidfile.unlink(missing_ok=True)
        stopped.append(str(info.get("version")))
    return stopped


def _gateway_404(resp: httpx.Response) -> bool:
    """The gateway's own 404 (no route for the prefix), not a 404 the module answered."""
    return resp.status_code == 404 and ("no module serves" in resp.text or "is disabled" in resp.text
                                        or "page not found" in resp.text)


def first_routed(gateway: str, prefix: str, timeout: float = 60) -> float:
    """Seconds until the gateway routes `prefix` to the module (any answer but the gateway's own 404/5xx)."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        try:
            resp = httpx.get(gateway + prefix, timeout=2)
            if resp.status_code < 500 and not _gateway_404(resp):
                return time.monotonic() - t0
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise CliError(f"the gateway did not route {prefix} within {timeout:.0f}s")


def first_unrouted(gateway: str, prefixes: list[str], timeout: float = 60) -> float:
    """Seconds until the gateway answers its own 404 for every prefix. Traefik polls the hub's provider and
    throttles reloads, so its table can name a drained instance for a few seconds after the hub dropped it;
    `disable` and `remove` return only once the front door agrees."""
    t0 = time.monotonic()
    pending = list(prefixes)
    while pending and time.monotonic() - t0 < timeout:
        try:
            if _gateway_404(httpx.get(gateway + pending[0], timeout=2)):
                pending.pop(0)
                continue
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    if pending:
        raise CliError(f"the gateway still routes {pending[0]} {timeout:.0f}s after the module left")
    return time.monotonic() - t0


# --------------------------------------------------------------------------- provisioning


def provision(name: str, directory: Path) -> None:
    """Database (created if missing), migrations, NATS user (config rewritten, server reloaded)."""
    from quark_sdk.cli import load_module, use_running_embedded_servers
    from quark_sdk.db import ensure_database, upgrade_database

    use_running_embedded_servers(directory)
    module = load_module(name)
    settings = module.settings_cls.load()
    manifest = module.manifest()
    if module.metadata is not None or manifest.requires.database:
        url = settings.service_database_url(module.database_name)
        ensure_database(url)
        if module.migrations_dir.exists():
            upgrade_database(module.migrations_dir, url)
    if manifest.requires.event_bus or module.consumers:
        provision_nats(directory, module, ref=name if is_ref(name) else None)


def provision_nats(directory: Path, module: Any, ref: str | None = None) -> None:
    """Give `module` its NATS user: the station's config is rewritten with every installed module, every module
    provisioned earlier by import path (remembered in nats/by-ref.json, so a later rewrite keeps their users)
    and this one, and the server reloads it."""
    from quark_sdk import natsauth
    from quark_sdk.cli import load_module
    from quark_sdk.secrets import EnvFileSecrets
    from quark_sdk.supervisor import write_json_atomic

    store = EnvFileSecrets(directory / "secrets", {})
    if not store.get(natsauth.SECRETS_PATH):
        return  # the station's NATS runs without users
    refs_file = directory / "nats" / "by-ref.json"
    try:
        refs: dict[str, str] = json.loads(refs_file.read_text())
    except (OSError, ValueError):
        refs = {}
    if ref is not None:
        refs[module.name] = ref
        write_json_atomic(refs_file, refs)
    by_name = {m.name: m for m in installed_modules(broken=[]) if m.manifest().requires.event_bus or m.consumers}
    for name, earlier in refs.items():
        if name not in by_name and name != module.name:
            try:
                by_name[name] = load_module(earlier)
            except CliError:
                continue  # no longer importable: its user goes with it
    by_name.pop(module.name, None)
    bus = [*by_name.values(), module]
    passwords = natsauth.ensure_passwords(store, [m.name for m in bus])
    natsauth.write_config(directory / "nats" / "nats.conf", bus, passwords)
    try:
        pid = json.loads((directory / "infra.json").read_text())["pids"]["nats"]
        os.kill(int(pid), signal.SIGHUP)  # nats-server reloads its users and permissions
        time.sleep(0.5)
    except (OSError, ValueError, KeyError, TypeError):
        pass


# --------------------------------------------------------------------------- commands


def cmd_provision(args: argparse.Namespace) -> int:
    provision(args.name, data_dir(args))
    return 0


def cmd_install(args: argparse.Namespace) -> int:
    directory = data_dir(args)
    t0 = time.monotonic()
    hub = Hub(directory)
    if is_ref(args.source):
        manifest = manifest_of_ref(args.source)
        name, ref = manifest["name"], args.source
    else:
        before = _manifests()
        pip_install(args.source)
        after = _manifests()
        new = sorted(set(after) - set(before))
        found = args.name or (new[0] if len(new) == 1 else None)
        if found is None:
            raise CliError(f"{args.source} installed, but it added {len(new)} modules ({', '.join(new) or 'none'});"
                           " name the one to dock: --name NAME")
        if found not in after:
            raise CliError(f"no installed module is named {found}")
        name, ref, manifest = found, found, after[found]
    print(f"installed {name} {manifest['version']}; provisioning its database, migrations and NATS user …",
          flush=True)
    _run([sys.executable, "-m", "quark_sdk.cli", "provision", ref, "--data-dir", str(directory)],
         f"provisioning {name}", env=_station_env(directory, hub.station))
    hub.call("POST", f"{name}/installed", json={"version": manifest["version"], "source": args.source})
    pid, port = dock_process(directory, hub.station, ref, manifest["version"], name=name)
    hub.wait(name, lambda v: any(i["routed"] for i in v["instances"]), "docking", timeout=args.timeout)
    prefixes = [p for p in manifest["exposes"]["api"] if p != "/"]
    took = time.monotonic() - t0
    if prefixes:
        first_routed(hub.gateway, prefixes[0], timeout=args.timeout)
        took = time.monotonic() - t0
        print(f"docked {name} {manifest['version']} (pid {pid}, port {port}); {hub.gateway}{prefixes[0]} is routed "
              f"{took:.1f}s after `quark install` started", flush=True)
    else:
        print(f"docked {name} {manifest['version']} (pid {pid}, port {port}) in {took:.1f}s", flush=True)
    return 0


def cmd_enable_disable(args: argparse.Namespace) -> int:
    hub = Hub(data_dir(args))
    prefixes = hub.prefixes(args.name) if args.action == "disable" else []
    view = hub.call("POST", f"{args.name}/{args.action}")
    if args.action == "disable":
        print(f"{args.name} disabled: routes removed; waiting for its instances to drain and deregister …", flush=True)
        if not args.no_wait:
            hub.wait(args.name, lambda v: not v["instances"], "draining", timeout=args.timeout)
            first_unrouted(hub.gateway, prefixes, timeout=args.timeout)
        print(f"{args.name} is disabled (stays so across restarts; `quark modules enable {args.name}` reverses it)")
    else:
        print(f"{args.name} enabled; its instances dock again on their next heartbeat", flush=True)
        if not args.no_wait:
            hub.wait(args.name, lambda v: any(i["routed"] for i in v["instances"]), "docking again",
                     timeout=args.timeout)
        print(f"{args.name} is enabled and routed")
    del view
    return 0


def cmd_upgrade(args: argparse.Namespace) -> int:
    directory = data_dir(args)
    hub = Hub(directory)
    name = args.name
    current = hub.lifecycle(name)
    old = sorted({i["version"] for i in current["instances"] if i["routed"]})
    if not old:
        raise CliError(f"{name} has no routed instance to upgrade from")
    if is_ref(args.source):
        manifest: dict[str, Any] | None = manifest_of_ref(args.source)
        ref = args.source
    else:
        pip_install(args.source, upgrade=True)
        manifest, ref = _manifests().get(name), name
    if manifest is None or manifest["name"] != name:
        raise CliError(f"{args.source} does not provide module {name}")
    new = manifest["version"]
    if new in old:
        raise CliError(f"{name} {new} is already running; nothing to upgrade")
    print(f"upgrading {name} {', '.join(old)} → {new}", flush=True)
    _run([sys.executable, "-m", "quark_sdk.cli", "provision", ref, "--data-dir", str(directory)],
         f"migrating {name}", env=_station_env(directory, hub.station))
    hub.call("POST", f"{name}/installed", json={"version": new, "source": args.source})
    hub.call("PUT", f"{name}/traffic", json={"weights": dict.fromkeys(old, 100)})  # the new one gets 0 at first
    pid, port = dock_process(directory, hub.station, ref, new, name=name)
    hub.wait(name, lambda v: any(i["version"] == new and i["health"] != "unhealthy" for i in v["instances"]),
             f"docking {new}", timeout=args.timeout)
    for step in args.steps:
        weights = {**dict.fromkeys(old, 100 - step), new: step} if step < 100 else {new: 100}
        hub.call("PUT", f"{name}/traffic", json={"weights": weights})
        print(f"  traffic {weights}", flush=True)
        time.sleep(args.pause)
    hub.call("POST", f"{name}/upgrade", json={"to_version": new})
    hub.wait(name, lambda v: all(i["version"] == new for i in v["instances"]), "draining the old version",
             timeout=args.timeout)
    time.sleep(args.pause)  # the gateways' last tables that still named the old instances have expired
    stopped = stop_docked(directory, name, keep_version=new)
    print(f"{name} upgraded to {new} (pid {pid}, port {port}); old versions retired"
          + (f", their processes stopped ({', '.join(stopped)})" if stopped else ""), flush=True)
    return 0


def cmd_remove(args: argparse.Namespace) -> int:
    directory = data_dir(args)
    hub = Hub(directory)
    name = args.name
    prefixes = hub.prefixes(name)
    hub.call("DELETE", name, params={"purge_data": str(args.purge_data).lower()})
    hub.wait(name, lambda v: not v["instances"], "draining", timeout=args.timeout)
    first_unrouted(hub.gateway, prefixes, timeout=args.timeout)
    stop_docked(directory, name)
    if args.purge_data:
        print(_run([sys.executable, "-m", "quark_sdk.cli", "purge", name, "--data-dir", str(directory)],
                   f"purging the data of {name}", env=_station_env(directory, hub.station)).strip(), flush=True)
    if not args.keep_package and not is_ref(name):
        dist = _distribution_of(name)
        if dist:
            _run([sys.executable, "-m", "pip", "uninstall", "--yes", "--quiet", dist], f"pip uninstall {dist}")
    print(f"{name} removed" + (" and its database dropped" if args.purge_data else " (its database is kept)"))
    return 0


def _distribution_of(name: str) -> str | None:
    from importlib.metadata import distributions

    for dist in distributions():
        if any(ep.group == "quark.modules" and ep.name == name for ep in dist.entry_points):
            return str(dist.metadata["Name"])
    return None


def cmd_purge(args: argparse.Namespace) -> int:
    from quark_sdk.cli import use_running_embedded_servers
    from quark_sdk.config import ServiceSettings
    from quark_sdk.db import drop_database

    directory = data_dir(args)
    use_running_embedded_servers(directory)
    # By name: the module may be gone already (docked from an import path, or uninstalled).
    settings = ServiceSettings.load()
    drop_database(settings.service_database_url(args.name.replace("-", "_")))
    others = [m.name for m in installed_modules(broken=[])]
    deleted = asyncio.run(_purge_bus(directory, settings.nats_url, args.name, others))
    if deleted:
        print(f"deleted {len(deleted)} JetStream consumers and advisory streams of {args.name}: "
              + ", ".join(deleted), flush=True)
    return 0


async def _purge_bus(directory: Path, nats_url: str, module: str, others: Iterable[str]) -> list[str]:
    """As the station's NATS operator (a module's own user may not delete its consumers)."""
    import nats

    from quark_sdk import natsauth
    from quark_sdk.secrets import EnvFileSecrets

    passwords = EnvFileSecrets(directory / "secrets", {}).get(natsauth.SECRETS_PATH) or {}
    url = nats_url
    if natsauth.OPERATOR_USER in passwords:
        url = natsauth.with_credentials(nats_url, natsauth.OPERATOR_USER, passwords[natsauth.OPERATOR_USER])
    nc = await nats.connect(url, connect_timeout=5, max_reconnect_attempts=0)
    try:
        return await purge_consumers(nc.jetstream(), module, others)
    finally:
        await nc.close()


async def purge_consumers(js: Any, module: str, others: Iterable[str], streams: Iterable[str] | None = None,
                          ) -> list[str]:
    """Delete a removed module's durable consumers (`<module>-<purpose>`, and `<module>-<purpose>__<event>` on
    streams with private events) and their max-deliveries advisory streams (`<stream>_ADV_<consumer>`), so a
    purged module leaves nothing pending on the bus. A consumer of another module whose name merely starts
    the same way (module `recs-extra` beside `recs`) is left alone. Event streams themselves are kept: other
    modules read them. Returns what was deleted."""
    prefix = f"{module}-"
    longer = [f"{o}-" for o in others if o != module and f"{o}-".startswith(prefix)]

    def mine(consumer: str) -> bool:
        return consumer.startswith(prefix) and not any(consumer.startswith(x) for x in longer)

    if streams is None:
        streams = [info.config.name for info in await js.streams_info()]
    deleted: list[str] = []
    for stream in streams:
        _, adv, consumer = stream.partition("_ADV_")
        if adv:
            if mine(consumer):
                await js.delete_stream(stream)
                deleted.append(stream)
            continue
        for info in await js.consumers_info(stream):
            if mine(info.name):
                await js.delete_consumer(stream, info.name)
                deleted.append(f"{stream}/{info.name}")
    return deleted


def add_commands(sub: Any) -> None:
    install = sub.add_parser("install", help="install a module into the running station and dock it")
    install.add_argument("source", help="a path, a package name or a git URL (anything pip installs), or an import "
                                        "path package.module:attr to dock as it is (no pip)")
    install.add_argument("--name", help="the module to dock, when the package brings several")
    install.add_argument("--data-dir")
    install.add_argument("--timeout", type=float, default=120)
    install.set_defaults(func=cmd_install)

    upgrade = sub.add_parser("upgrade", help="dock a new version beside the old, shift traffic, drain the old")
    upgrade.add_argument("name")
    upgrade.add_argument("source", help="the new version: a path, package spec or git URL")
    upgrade.add_argument("--steps", type=lambda s: [int(x) for x in s.split(",")], default=[10, 50, 100],
                         help="traffic percentages for the new version (default 10,50,100)")
    upgrade.add_argument("--pause", type=float, default=2.0, help="seconds between steps")
    upgrade.add_argument("--data-dir")
    upgrade.add_argument("--timeout", type=float, default=120)
    upgrade.set_defaults(func=cmd_upgrade)

    remove = sub.add_parser("remove", help="drain and remove a module from the running station")
    remove.add_argument("name")
    remove.add_argument("--purge-data", action="store_true", help="also drop its database")
    remove.add_argument("--keep-package", action="store_true", help="do not pip-uninstall it")
    remove.add_argument("--data-dir")
    remove.add_argument("--timeout", type=float, default=120)
    remove.set_defaults(func=cmd_remove)

    for name, func, text in (("provision", cmd_provision, "create a module's database, migrate it, add its NATS user"),
                             ("purge", cmd_purge, "drop a module's database")):
        p = sub.add_parser(name, help=text)
        p.add_argument("name")
        p.add_argument("--data-dir")
        p.set_defaults(func=func)


def add_module_actions(listing: argparse.ArgumentParser) -> None:
    """`quark modules [enable|disable NAME]`: the listing stays the default."""
    listing.add_argument("action", nargs="?", choices=["enable", "disable"])
    listing.add_argument("name", nargs="?")
    listing.add_argument("--no-wait", action="store_true")
    listing.add_argument("--data-dir")
    listing.add_argument("--timeout", type=float, default=60)
