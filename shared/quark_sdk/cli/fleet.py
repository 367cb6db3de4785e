"""quark dev --fleet: one supervised process per module, Traefik in front."""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from quark_sdk.app import QuarkModule
from quark_sdk.cli.loading import CliError


def _fleet_ports(args: argparse.Namespace, modules: list[QuarkModule]) -> dict[str, int]:
    from quark_sdk.embedded import free_port, port_open

    ports = {m.name: (free_port() if args.free_ports else (m.manifest().port or free_port())) for m in modules}
    for name, port in ports.items():
        if port_open("127.0.0.1", port):
            raise CliError(f"port {port} for module {name} is taken; use --free-ports")
    return ports


def _run_fleet(args: argparse.Namespace, modules: list[QuarkModule], infra: Any, t0: float,
               sock: socket.socket | None = None) -> int:
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
            if sock is not None:
                sock.close()  # the station's port, held until now: Traefik binds it
            sup.start_all(["traefik"])
            _wait_routed(gateway, sup.children["traefik"], modules, timeout=60)
            state["gateway"] = {"url": public, "dashboard": gateway.admin_url + "/dashboard/",
                                "ping": gateway.ping_url, "metrics": gateway.metrics_url}
        up["flag"] = True
        publish()
        if "hub" in urls:
            from quark_sdk.lifecycle_cli import write_station

            write_station(data_dir, topology="fleet", gateway=public if gateway is not None else urls["hub"],
                          hub=urls["hub"], auth=urls.get("auth", public))
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
        from quark_sdk.lifecycle_cli import stop_docked

        stop_docked(data_dir, "*", grace=10)  # what `quark install` docked beside it ends with it
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
