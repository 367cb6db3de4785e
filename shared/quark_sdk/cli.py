"""The `quark` command: run the station (embedded or as a fleet), migrate, list and scaffold modules.

Modules are found through the `quark.modules` entry point group: a package
that declares `name = "quark_name.app:module"` is part of the station once it
is installed.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from quark_sdk.app import QuarkModule
from quark_sdk.config import ConfigError
from quark_sdk.embedded import EmbeddedError

log = logging.getLogger("quark.cli")

# Docking order: the hub first (others register with it), then identity, then the rest.
START_ORDER = ("hub", "auth", "user", "media", "blog", "messaging", "ai", "mailer", "web")


class CliError(Exception):
    """A user-facing failure: printed as one line, exit status 2."""


def installed_modules(only: Sequence[str] | None = None, *,
                      broken: list[str] | None = None) -> list[QuarkModule]:
    """Installed modules in docking order. With `broken`, a module that fails to load is reported there
    (and skipped) instead of failing the whole listing."""
    found: dict[str, QuarkModule] = {}
    for ep in entry_points(group="quark.modules"):
        if only and ep.name not in only:
            continue  # entry points are named after their module: don't import what was not asked for
        try:
            module = ep.load()
            if not isinstance(module, QuarkModule):
                raise CliError(f"entry point {ep.name} does not point at a QuarkModule")
        except Exception as exc:
            message = str(exc) if isinstance(exc, CliError) else \
                f"module entry point {ep.name} ({ep.value}) failed to load: {exc}"
            if broken is None:
                raise CliError(message) from exc
            broken.append(message)
            continue
        found[module.name] = module
    if only:
        missing = [n for n in only if n not in found]
        if missing:
            raise CliError(f"unknown module(s): {', '.join(missing)}; installed: {', '.join(sorted(found)) or 'none'}")
        found = {n: found[n] for n in only}
    order = {n: i for i, n in enumerate(START_ORDER)}
    return sorted(found.values(), key=lambda m: (order.get(m.name, len(order)), m.name))


def load_module(ref: str) -> QuarkModule:
    """An installed module by name, or any module by import path (`package.module:attr`)."""
    if ":" not in ref:
        (module,) = installed_modules([ref])
        return module
    import importlib

    path, _, attr = ref.partition(":")
    try:
        module = getattr(importlib.import_module(path), attr)
    except (ImportError, AttributeError) as exc:
        raise CliError(f"cannot load module {ref}: {exc}") from exc
    if not isinstance(module, QuarkModule):
        raise CliError(f"{ref} is not a QuarkModule")
    return module


def _has_database(module: QuarkModule) -> bool:
    return module.metadata is not None or module.manifest().requires.database


# --------------------------------------------------------------------------- quark modules


def cmd_modules(args: argparse.Namespace) -> int:
    broken: list[str] = []
    modules = installed_modules(broken=broken)
    for message in broken:
        print(f"quark: {message}", file=sys.stderr)
    status = 1 if broken else 0
    manifests = [m.manifest().model_dump(mode="json") for m in modules]
    if args.json:
        print(json.dumps(manifests, indent=2))
        return status
    if not manifests:
        print("no modules installed (make install)")
        return status
    for mf in manifests:
        print(f"{mf['name']:<10} {mf['version']:<8} port {mf['port']:<5} api {', '.join(mf['exposes']['api']) or '-'}")
        if mf["exposes"]["events"]:
            print(f"{'':<10} publishes {', '.join(mf['exposes']['events'])}")
        if mf["consumes"]:
            print(f"{'':<10} consumes  {', '.join(mf['consumes'])}")
    return status


# --------------------------------------------------------------------------- quark migrate


def cmd_migrate(args: argparse.Namespace) -> int:
    from quark_sdk.db import upgrade_database

    for module in installed_modules(args.modules or None):
        if not _has_database(module) or not module.migrations_dir.exists():
            continue
        settings = module.settings_cls.load()
        url = settings.service_database_url(module.database_name)
        print(f"migrating {module.name} …", flush=True)
        upgrade_database(module.migrations_dir, url)
    return 0


# --------------------------------------------------------------------------- quark dev


def _start_infra(data_dir: Path, modules: list[QuarkModule]) -> Any:
    from quark_sdk.embedded import EmbeddedInfra

    # Every module on the bus connects as its own NATS user (quark_sdk.natsauth; passwords in .quark/secrets).
    bus = [m for m in modules if m.manifest().requires.event_bus or m.consumers]
    infra = EmbeddedInfra(data_dir, die_with_parent=True, bus_modules=bus)
    infra.start(databases=[m.database_name for m in modules if _has_database(m)])
    return infra


def _migrate_all(modules: list[QuarkModule], postgres_url: str) -> None:
    from quark_sdk.config import to_async_url
    from quark_sdk.db import upgrade_database

    base = postgres_url.rsplit("/", 1)[0]
    for module in modules:
        if _has_database(module) and module.migrations_dir.exists():
            upgrade_database(module.migrations_dir, to_async_url(f"{base}/{module.database_name}"))


def cmd_dev(args: argparse.Namespace) -> int:
    extra = [load_module(ref) for ref in args.with_modules]
    args.refs = {m.name: ref for m, ref in zip(extra, args.with_modules, strict=True)}
    modules = [] if args.modules == "" else installed_modules(args.modules.split(",") if args.modules else None)
    modules += [m for m in extra if m.name not in {x.name for x in modules}]
    if not modules:
        raise CliError("no modules installed; run `make install` first")
    data_dir = Path(args.data_dir).resolve()
    t0 = time.monotonic()
    # The station's port first: a busy one is a one-line error before anything starts or is written.
    sock = _bind_public(args.host, args.port)
    if args.fleet:
        _fleet_ports(args, modules)
        if any(m.name == "hub" for m in modules):  # Traefik and its config must be there before anything starts
            from quark_sdk.frontdoor import find_source_config, traefik_binary

            try:
                traefik_binary(), find_source_config()
            except EmbeddedError as exc:
                sock.close()
                raise CliError(str(exc)) from None
        sock.close()  # Traefik binds it; the gap is a few seconds of start-up
    infra = _start_infra(data_dir, modules)
    args.mail_sink = mail_sink = _start_mail_sink(data_dir, modules)
    from quark_sdk.embedded import InfraWatchdog

    watchdog = InfraWatchdog(infra).start()
    try:
        os.environ.update(infra.env())
        if mail_sink is not None:
            os.environ.update(mail_sink.env())
        _migrate_all(modules, infra.postgres.url)
        if args.fleet:
            return _run_fleet(args, modules, infra, t0)
        return _run_embedded(args, modules, infra, t0, sock)
    except KeyboardInterrupt:
        return 0  # Ctrl-C is how `quark dev` is meant to stop
    finally:
        if mail_sink is not None:
            mail_sink.stop()
        watchdog.stop()
        infra.stop()
        watchdog.join()
        sock.close()
        print("quark: stopped; data kept in", data_dir, flush=True)


def _start_mail_sink(data_dir: Path, modules: list[QuarkModule]) -> Any:
    """The local SMTP sink the mailer sends to (mails kept in <data_dir>/mail, shown at /dev/mail), unless
    the mailer is not run or QUARK_MAILER_SMTP_HOST names a real relay."""
    if not any(m.name == "mailer" for m in modules) or os.environ.get("QUARK_MAILER_SMTP_HOST"):
        return None
    from quark_sdk.devmail import DevMailSink

    return DevMailSink(data_dir / "mail").start()


def _mail_line(base: str, sink: Any) -> list[str]:
    if sink is None:
        return []
    return [f"  mail      {base}/dev/mail   (dev mailbox: every mail sent, kept by the SMTP sink on "
            f"127.0.0.1:{sink.port})"]


def _bind_public(host: str, port: int) -> Any:
    """The listening socket of the station, bound now (uvicorn serves on it), or CliError if it is taken."""
    import socket

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise CliError(f"port {port} on {host} is already in use ({exc.strerror}); stop what listens there "
                       f"or choose another: quark dev --port N (or QUARK_PORT=N)") from None
    sock.listen(2048)
    sock.set_inheritable(False)
    return sock


def _run_embedded(args: argparse.Namespace, modules: list[QuarkModule], infra: Any, t0: float, sock: Any) -> int:
    import uvicorn

    from quark_sdk.app import FreezeHeapAfterStartup, create_service_app
    from quark_sdk.gateway import EmbeddedGateway, MountedModule

    base = f"http://{args.host}:{args.port}"
    if any(m.name == "hub" for m in modules):
        os.environ.setdefault("QUARK_HUB_URL", base)
    os.environ.setdefault("QUARK_GATEWAY_URL", base)
    mounted = []
    for module in modules:
        settings = module.settings_cls.load(port=args.port, host=args.host, instance_url=base)
        app = create_service_app(module, settings, migrate_on_start=False, health_url=f"{base}/health/{module.name}")
        mounted.append(MountedModule(module.name, app, tuple(module.manifest().exposes.api)))
    gateway = EmbeddedGateway(mounted)
    from quark_sdk.telemetry import setup_logging

    setup_logging("quark", level="WARNING")
    # Quiet, but not about what a developer needs: the links auth logs in dev (docs/auth.md).
    logging.getLogger("quark.auth.mail").setLevel(logging.INFO)
    config = uvicorn.Config(FreezeHeapAfterStartup(gateway), host=args.host, port=args.port, lifespan="on",
                            log_level="warning", access_log=False, ws_ping_interval=20, timeout_graceful_shutdown=10)
    names = [m.name for m in modules]

    class Server(uvicorn.Server):
        async def startup(self, sockets: list[Any] | None = None) -> None:
            await super().startup(sockets=sockets)
            if not self.should_exit:  # every module's lifespan ran and the socket serves: now it is up
                print(_banner(base, infra, names, time.monotonic() - t0, args.mail_sink), flush=True)

    Server(config).run(sockets=[sock])
    return 0


def _banner(base: str, infra: Any, names: list[str], took: float, mail_sink: Any = None) -> str:
    return "\n".join([
        f"Quark is up at {base}  (started in {took:.1f}s; Ctrl-C stops it)",
        f"  modules   {', '.join(names)}",
        f"  health    {base}/health   ready: {base}/health/ready   metrics: {base}/metrics",
        *([f"  hub       {base}/hub"] if "hub" in names else []),
        *_mail_line(base, mail_sink),
        f"  data      {infra.data_dir}",
        f"  servers   postgres {infra.postgres.port} · valkey {infra.redis.port} · nats {infra.nats.port}",
    ])


def _fleet_ports(args: argparse.Namespace, modules: list[QuarkModule]) -> dict[str, int]:
    from quark_sdk.embedded import free_port, port_open

    ports = {m.name: (free_port() if args.free_ports else m.manifest().port) for m in modules}
    for name, port in ports.items():
        if port_open("127.0.0.1", port):
            raise CliError(f"port {port} for module {name} is taken; use --free-ports")
    return ports


def _run_fleet(args: argparse.Namespace, modules: list[QuarkModule], infra: Any, t0: float) -> int:
    """One supervised process per module, real Traefik in front on the station's port (when the hub runs)."""
    from quark_sdk.embedded import parent_death_signal
    from quark_sdk.frontdoor import Gateway, traefik_binary
    from quark_sdk.supervisor import Child, Policy, Supervisor, write_json_atomic

    ports = _fleet_ports(args, modules)
    data_dir = Path(args.data_dir).resolve()
    urls = {n: f"http://{args.host}:{p}" for n, p in ports.items()}
    public = f"http://{args.host}:{args.port}"
    env = dict(os.environ)
    env.setdefault("QUARK_GATEWAY_URL", public)
    if "hub" in urls:
        env["QUARK_HUB_URL"] = urls["hub"]
        env["QUARK_HUB_JWKS_URL"] = urls["hub"] + "/api/v1/hub/.well-known/jwks.json"
    if "auth" in urls:
        env["QUARK_AUTH_JWKS_URL"] = urls["auth"] + "/api/v1/auth/.well-known/jwks.json"
    stop = {"flag": False}

    def request_stop(signum: int, frame: Any) -> None:
        stop["flag"] = True

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    logs = data_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    children = []
    for module in modules:
        ref = args.refs.get(module.name, module.name)
        cmd = [sys.executable, "-m", "quark_sdk.cli", "serve", ref, "--port", str(ports[module.name]),
               "--host", args.host, "--no-migrate"]
        children.append(Child(module.name, cmd, env, logs / f"{module.name}.log",
                              preexec=parent_death_signal(signal.SIGTERM)))
    gateway: Gateway | None = None
    if "hub" in urls:
        gateway = Gateway(data_dir, args.host, args.port, urls["hub"], free_ports=args.free_ports)
        gateway.write_config()
        children.append(Child("traefik", [str(traefik_binary()), f"--configFile={gateway.config_file}"], env,
                              logs / "traefik.log", preexec=parent_death_signal(signal.SIGTERM)))
    policy = Policy(initial=float(os.environ.get("QUARK_RESTART_BACKOFF", "0.5")),
                    max_crashes=int(os.environ.get("QUARK_RESTART_MAX_CRASHES", "5")),
                    window=float(os.environ.get("QUARK_RESTART_WINDOW", "60")))
    state: dict[str, Any] = {"modules": urls, "pids": {}, "infra": infra.env(), "supervisor": {},
                             "free_ports": bool(args.free_ports)}
    up = {"flag": False}

    def publish(_child: Any = None) -> None:
        if not up["flag"]:
            return
        state["pids"] = {n: c.pid for n, c in sup.children.items() if n in urls}
        state["supervisor"] = sup.snapshot()
        state["updated_at"] = time.time()  # the hub's /hub page shows the supervisor while this is fresh
        write_json_atomic(data_dir / "fleet.json", state)

    sup = Supervisor(children, policy=policy, control_dir=data_dir / "run" / "control", on_change=publish)
    try:
        sup.start_all(list(urls))
        timeout = float(os.environ.get("QUARK_START_TIMEOUT", "180"))
        _wait_healthy(urls, {n: sup.children[n].proc for n in urls}, timeout=timeout)  # type: ignore[misc]
        if gateway is not None:
            # Once the hub answers: Traefik's provider backs off while it cannot fetch, delaying the routes.
            sup.start_all(["traefik"])
            _wait_routed(gateway, sup.children["traefik"], modules, timeout=60)
            state["gateway"] = {"url": public, "dashboard": gateway.admin_url + "/dashboard/",
                                "ping": gateway.ping_url, "metrics": gateway.metrics_url}
        up["flag"] = True
        publish()
        print(f"Quark fleet is up (started in {time.monotonic() - t0:.1f}s; Ctrl-C stops it)", flush=True)
        if gateway is not None:
            print(f"  gateway    {public}   (Traefik; dashboard {gateway.admin_url}/dashboard/, "
                  f"metrics {gateway.metrics_url})", flush=True)
            print(f"  status     {public}/hub   (modules, health, restarts: the hub's live page)", flush=True)
        for name, url in urls.items():
            print(f"  {name:<10} {url}   pid {sup.children[name].pid}", flush=True)
        print(f"  logs       {logs}", flush=True)
        if "mailer" in urls and args.mail_sink is not None:
            print(f"  mail       {urls['mailer']}/dev/mail   (dev mailbox; SMTP sink on "
                  f"127.0.0.1:{args.mail_sink.port})", flush=True)
        last, written = json.dumps(sup.snapshot(), sort_keys=True), time.monotonic()
        while not stop["flag"]:
            time.sleep(0.2)
            sup.poll()
            now = json.dumps(sup.snapshot(), sort_keys=True)
            if now != last or time.monotonic() - written > 2:  # changes at once, else a heartbeat every 2 s
                publish()
                last, written = now, time.monotonic()
    finally:
        order = (["traefik"] if gateway is not None else []) + [m.name for m in reversed(modules)]
        sup.stop_all(order)
    return 0


def _wait_routed(gateway: Any, traefik: Any, modules: list[QuarkModule], timeout: float) -> None:
    """Until Traefik has a router with an UP server for every module that exposes routes."""
    import httpx

    wanted = {m.name for m in modules if m.manifest().exposes.api}
    deadline = time.monotonic() + timeout
    seen: dict[str, list[str]] = {}
    while time.monotonic() < deadline:
        if traefik.proc is None or traefik.proc.poll() is not None:
            raise CliError(f"Traefik exited during start-up; see {traefik.log_file}")
        try:
            seen = gateway.routed_services()
            if all(seen.get(name) for name in wanted):
                return
        except (httpx.HTTPError, ValueError):
            pass
        time.sleep(0.1)
    missing = sorted(n for n in wanted if not seen.get(n))
    raise CliError(f"Traefik has no healthy route for {', '.join(missing)} within {timeout:.0f}s; "
                   f"see {traefik.log_file}")


def _wait_healthy(urls: dict[str, str], procs: dict[str, subprocess.Popen[bytes]], timeout: float) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    pending = dict(urls)
    while pending and time.monotonic() < deadline:
        for name, url in list(pending.items()):
            if procs[name].poll() is not None:
                raise CliError(f"module {name} exited during start-up (status {procs[name].returncode}); see its log")
            try:
                if httpx.get(url + "/health", timeout=1).status_code == 200:
                    del pending[name]
            except httpx.HTTPError:
                pass
        time.sleep(0.1)
    if pending:
        raise CliError(f"modules not up within {timeout:.0f}s: {', '.join(pending)}")


# --------------------------------------------------------------------------- quark serve


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from quark_sdk.app import FreezeHeapAfterStartup, create_service_app

    module = load_module(args.module)
    overrides: dict[str, Any] = {}
    if args.port:
        overrides["port"] = args.port
    if args.host:
        overrides["host"] = args.host
    settings = module.settings_cls.load(**overrides)
    app = create_service_app(module, settings, migrate_on_start=False if args.no_migrate else None)
    uvicorn.run(FreezeHeapAfterStartup(app), host=settings.host, port=settings.port, log_level="warning",
                access_log=False, lifespan="on", ws_ping_interval=20, timeout_graceful_shutdown=10)
    return 0


# --------------------------------------------------------------------------- quark create


def cmd_create(args: argparse.Namespace) -> int:
    from quark_sdk.scaffold import create_module

    target = create_module(args.name, Path(args.dir), port=args.port)
    print(f"created module {args.name} in {target}")
    print(f"next: pip install -e {target} && quark modules")
    return 0


# --------------------------------------------------------------------------- quark docs


def cmd_docs(args: argparse.Namespace) -> int:
    from quark_sdk.apidocs import write_api_docs

    modules = [] if args.modules == "" else installed_modules(args.modules.split(",") if args.modules else None)
    modules += [load_module(ref) for ref in args.with_modules]
    for path in write_api_docs(modules, Path(args.out)):
        print(f"wrote {path}")
    return 0


# --------------------------------------------------------------------------- main


def cmd_module_command(args: argparse.Namespace) -> int:
    import asyncio

    from quark_sdk.app import ServiceContext, start_context, stop_context

    module, command = args.module_command

    async def run() -> int:
        ctx = ServiceContext(module=module, settings=module.settings_cls.load(), manifest=module.manifest())
        await start_context(ctx, migrate=False, register=False, workers=False)
        try:
            return await command.run(args, ctx)
        finally:
            await stop_context(ctx)

    return asyncio.run(run())


def use_running_embedded_servers(data_dir: Path) -> None:
    """Point this process at the servers of a running `quark dev` unless configured otherwise."""
    from quark_sdk.embedded import port_open

    if "QUARK_POSTGRES_URL" in os.environ:
        return
    try:
        ports = json.loads((data_dir / "infra.json").read_text())["ports"]
    except (OSError, ValueError, KeyError):
        return
    if port_open("127.0.0.1", int(ports["postgres"])):
        os.environ.setdefault("QUARK_POSTGRES_URL", f"postgresql://postgres@127.0.0.1:{ports['postgres']}/postgres")
        os.environ.setdefault("QUARK_REDIS_URL", f"redis://127.0.0.1:{ports['redis']}/0")
        os.environ.setdefault("QUARK_NATS_URL", f"nats://127.0.0.1:{ports['nats']}")
        os.environ.setdefault("QUARK_DATA_DIR", str(data_dir.resolve()))
        _use_nats_users(data_dir, f"nats://127.0.0.1:{ports['nats']}")


def _use_nats_users(data_dir: Path, nats_url: str) -> None:
    """Each installed module's own NATS user, as `quark dev` generated them (none: an unauthenticated server)."""
    from quark_sdk import natsauth
    from quark_sdk.secrets import EnvFileSecrets

    passwords = EnvFileSecrets(data_dir / "secrets", {}).get(natsauth.SECRETS_PATH)
    if passwords:
        for key, value in natsauth.module_env(installed_modules(broken=[]), nats_url, passwords).items():
            os.environ.setdefault(key, value)


def build_parser(modules: Sequence[QuarkModule] = ()) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="quark", description="Quark station tools")
    sub = parser.add_subparsers(dest="command", required=True)
    for module in modules:
        for command in module.commands:
            cmd = sub.add_parser(command.name, help=f"[{module.name}] {command.help}")
            command.add_arguments(cmd)
            cmd.set_defaults(func=cmd_module_command, module_command=(module, command))

    dev = sub.add_parser("dev", help="run the whole station locally (embedded servers from pip wheels)")
    dev.add_argument("--fleet", action="store_true", help="one process per module, each on its own port")
    dev.add_argument("--host", default="127.0.0.1")
    dev.add_argument("--port", type=int, default=int(os.environ.get("QUARK_PORT", "8000")))
    dev.add_argument("--data-dir", default=os.environ.get("QUARK_DATA_DIR", ".quark"))
    dev.add_argument("--modules", help="comma-separated subset of the installed modules to run ('' for none)")
    dev.add_argument("--with", dest="with_modules", action="append", default=[], metavar="REF",
                     help="also run a module that is not installed, by import path (package.app:module)")
    dev.add_argument("--free-ports", action="store_true", help="fleet: pick free ports instead of manifest ports")
    dev.set_defaults(func=cmd_dev)

    serve = sub.add_parser("serve", help="run one module (what a container runs)")
    serve.add_argument("module", help="installed module name, or an import path like package.app:module")
    serve.add_argument("--port", type=int)
    serve.add_argument("--host")
    serve.add_argument("--no-migrate", action="store_true")
    serve.set_defaults(func=cmd_serve)

    migrate = sub.add_parser("migrate", help="apply database migrations of installed modules")
    migrate.add_argument("modules", nargs="*")
    migrate.set_defaults(func=cmd_migrate)

    listing = sub.add_parser("modules", help="list installed modules and their manifests")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(func=cmd_modules)

    docs = sub.add_parser("docs", help="write OpenAPI (per module) and AsyncAPI (events) documents")
    docs.add_argument("--out", default="docs/api")
    docs.add_argument("--modules", help="comma-separated subset of the installed modules ('' for none)")
    docs.add_argument("--with", dest="with_modules", action="append", default=[], metavar="REF")
    docs.set_defaults(func=cmd_docs)

    create = sub.add_parser("create", help="scaffold a new module that docks")
    create.add_argument("name")
    create.add_argument("--dir", default="services")
    create.add_argument("--port", type=int, default=3100)
    create.set_defaults(func=cmd_create)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    builtin = {"dev", "serve", "migrate", "modules", "create", "docs", "-h", "--help"}
    try:
        # Module commands need the modules loaded; the built-in ones do not pay for it.
        if not argv or argv[0] in {"-h", "--help"}:
            modules = installed_modules(broken=[])  # the help lists the modules' commands too (create-admin…)
        else:
            modules = installed_modules() if argv[0] not in builtin else []
        if (argv and argv[0] in {"migrate"}) or (modules and argv and argv[0] not in builtin):
            use_running_embedded_servers(Path(os.environ.get("QUARK_DATA_DIR", ".quark")))
    except CliError as exc:
        print(f"quark: {exc}", file=sys.stderr)
        return 2
    args = build_parser(modules).parse_args(argv)
    try:
        return int(args.func(args))
    except (CliError, ConfigError, EmbeddedError) as exc:
        print(f"quark: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
