"""quark serve: one module in its own process (what a container runs), docked beside a dev station if any."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

from quark_sdk.app import QuarkModule
from quark_sdk.cli.loading import load_module


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from quark_sdk.app import FreezeHeapAfterStartup, create_service_app

    module = load_module(args.module)
    overrides: dict[str, Any] = {}
    _beside_station(module)
    _own_nats_user(module, args.module)
    if args.port:
        overrides["port"] = args.port
    elif f"QUARK_{module.name.upper().replace('-', '_')}_PORT" not in os.environ and "QUARK_PORT" not in os.environ:
        overrides["port"] = module.manifest().port  # not the station's 8000
    if args.host:
        overrides["host"] = args.host
    settings = module.settings_cls.load(**overrides)
    app = create_service_app(module, settings, migrate_on_start=False if args.no_migrate else None)
    uvicorn.run(FreezeHeapAfterStartup(app), host=settings.host, port=settings.port, log_level="warning",
                access_log=False, lifespan="on", ws_ping_interval=20, timeout_graceful_shutdown=10)
    return 0


def _beside_station(module: QuarkModule) -> None:
    """`quark serve mymodule` next to a running `quark dev`: dock with its hub (and trust its keys)."""
    station = Path(os.environ.get("QUARK_DATA_DIR", ".quark")) / "station.json"
    if "QUARK_HUB_URL" in os.environ or not station.exists():
        return
    try:
        info = json.loads(station.read_text())
        os.kill(int(info["pid"]), 0)
    except (OSError, ValueError, KeyError):
        return
    os.environ["QUARK_HUB_URL"] = info["hub"]
    os.environ.setdefault("QUARK_GATEWAY_URL", info["gateway"])
    os.environ.setdefault("QUARK_HUB_JWKS_URL", f"{info['hub']}/api/v1/hub/.well-known/jwks.json")
    auth = info.get("auth", info["gateway"])
    os.environ.setdefault("QUARK_AUTH_JWKS_URL", f"{auth}/api/v1/auth/.well-known/jwks.json")


def _own_nats_user(module: QuarkModule, ref: str) -> None:
    """A module served by import path is not among the installed modules whose NATS users
    `use_running_embedded_servers` set. Beside a dev station whose NATS has users, it gets its own: created
    (config rewritten, server reloaded) unless `quark install`/`provision` made it already."""
    from quark_sdk import natsauth
    from quark_sdk.secrets import EnvFileSecrets

    data_dir = Path(os.environ.get("QUARK_DATA_DIR", ".quark"))
    url = os.environ.get("QUARK_NATS_URL")
    prefix = str(module.settings_cls.model_config.get("env_prefix", "")).upper()
    uses_bus = module.manifest().requires.event_bus or bool(module.consumers)
    if not url or not uses_bus or f"{prefix}NATS_URL" in os.environ or not (data_dir / "infra.json").exists():
        return
    store = EnvFileSecrets(data_dir / "secrets", {})
    passwords = store.get(natsauth.SECRETS_PATH) or {}
    if not passwords:
        return  # the station's NATS runs without users
    if module.name not in passwords:
        from quark_sdk.lifecycle_cli import provision_nats

        provision_nats(data_dir, module, ref=ref if ":" in ref else None)
        passwords = store.get(natsauth.SECRETS_PATH) or {}
    for key, value in natsauth.module_env([module], url, passwords).items():
        os.environ.setdefault(key, value)
