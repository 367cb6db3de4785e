"""Finding and loading modules (entry points or import paths) and pointing at a running station's servers."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from importlib.metadata import entry_points
from pathlib import Path

from quark_sdk.app import QuarkModule

# Docking order: the hub first (others register with it), then identity, then the rest.
START_ORDER = ("hub", "auth", "user", "media", "blog", "messaging", "ai", "mailer", "moderation", "web")


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
