"""quark dev: embedded servers, migrations, then the modules in one process behind the embedded gateway."""

from __future__ import annotations

import argparse
import logging
import os
import time
from pathlib import Path
from typing import Any

from quark_sdk.app import QuarkModule
from quark_sdk.cli.fleet import _fleet_ports, _run_fleet
from quark_sdk.cli.loading import CliError, _has_database, installed_modules, load_module
from quark_sdk.embedded import EmbeddedError


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
    # The station's port first: a busy one is a one-line error before anything starts or is written. The fleet
    # holds it bound but not listening (clients are refused) until Traefik starts: a port released now could be
    # handed out meanwhile as the ephemeral source port of a module's outgoing connection, and Traefik's bind
    # would then fail (seen once in tests/fleet/test_manager.py).
    sock = _bind_public(args.host, args.port, listen=not args.fleet)
    if args.fleet:
        _fleet_ports(args, modules)
        if any(m.name == "hub" for m in modules):  # Traefik and its config must be there before anything starts
            from quark_sdk.frontdoor import find_source_config, traefik_binary

            try:
                traefik_binary(), find_source_config()
            except EmbeddedError as exc:
                sock.close()
                raise CliError(str(exc)) from None
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
            return _run_fleet(args, modules, infra, t0, sock)
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


def _bind_public(host: str, port: int, *, listen: bool = True) -> Any:
    """The listening socket of the station, bound now (uvicorn serves on it), or CliError if it is taken.
    `listen=False`: only held, so the kernel does not hand the port out while clients are still refused."""
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
    if listen:
        sock.listen(2048)
    sock.set_inheritable(False)
    return sock


def _run_embedded(args: argparse.Namespace, modules: list[QuarkModule], infra: Any, t0: float, sock: Any) -> int:
    import uvicorn

    from quark_sdk.app import FreezeHeapAfterStartup, create_service_app
    from quark_sdk.gateway import EmbeddedGateway, MountedModule
    from quark_sdk.inprocess import LocalGateway

    base = f"http://{args.host}:{args.port}"
    if any(m.name == "hub" for m in modules):
        os.environ.setdefault("QUARK_HUB_URL", base)
    os.environ.setdefault("QUARK_GATEWAY_URL", base)
    mounted = []
    for module in modules:
        settings = module.settings_cls.load(port=args.port, host=args.host, instance_url=base)
        app = create_service_app(module, settings, migrate_on_start=False, health_url=f"{base}/health/{module.name}")
        mounted.append(MountedModule(module.name, app, tuple(module.manifest().exposes.api)))
    gateway = EmbeddedGateway(mounted, routes=_hub_routes(mounted), local_url=base)
    config = uvicorn.Config(FreezeHeapAfterStartup(gateway), host=args.host, port=args.port, lifespan="on",
                            log_level="warning", access_log=False, ws_ping_interval=20, timeout_graceful_shutdown=10)
    # A module calling the station's public API (the web client) reaches this gateway in-process, with the
    # proxy-header trust uvicorn gives loopback callers (ServiceContext.api_client; the fleet uses HTTP).
    local = LocalGateway(base, gateway, config.forwarded_allow_ips if config.proxy_headers else None)
    for m in mounted:
        m.ctx.local_gateway = local
    from quark_sdk.lifecycle_cli import write_station

    write_station(infra.data_dir, topology="embedded", gateway=base, hub=os.environ.get("QUARK_HUB_URL", base))
    from quark_sdk.telemetry import setup_logging

    setup_logging("quark", level="WARNING")
    # Quiet, but not about what a developer needs: the links auth logs in dev (docs/auth.md).
    logging.getLogger("quark.auth.mail").setLevel(logging.INFO)
    names = [m.name for m in modules]

    class Server(uvicorn.Server):
        async def startup(self, sockets: list[Any] | None = None) -> None:
            await super().startup(sockets=sockets)
            if not self.should_exit:  # every module's lifespan ran and the socket serves: now it is up
                print(_banner(base, infra, names, time.monotonic() - t0, args.mail_sink), flush=True)

    try:
        Server(config).run(sockets=[sock])
    finally:
        from quark_sdk.lifecycle_cli import stop_docked

        stop_docked(infra.data_dir, "*", grace=10)  # what `quark install` docked beside it ends with it
    return 0


def _hub_routes(mounted: list[Any]) -> Any:
    """The hub's routing table for the embedded gateway: read in-process when the hub runs here, else over
    HTTP from QUARK_HUB_URL; None without a hub (every prefix is served in-process, as listed)."""
    import httpx

    from quark_sdk.gateway_proxy import RouteTable

    hub = next((m for m in mounted if m.name == "hub"), None)
    if hub is not None:
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=hub.app), base_url="http://hub")
    elif os.environ.get("QUARK_HUB_URL"):
        client = httpx.AsyncClient(base_url=os.environ["QUARK_HUB_URL"], timeout=2)
    else:
        return None

    async def fetch() -> dict[str, Any]:
        resp = await client.get("/api/v1/hub/routes")
        resp.raise_for_status()
        data: dict[str, Any] = resp.json()
        return data

    return RouteTable(fetch)


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
