"""The `quark` argument parser and `main`, which dispatches to the commands."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from quark_sdk.app import QuarkModule
from quark_sdk.cli.commands import cmd_create, cmd_docs, cmd_migrate, cmd_module_command, cmd_modules
from quark_sdk.cli.dev import cmd_dev
from quark_sdk.cli.loading import CliError, installed_modules, use_running_embedded_servers
from quark_sdk.cli.serve import cmd_serve
from quark_sdk.config import ConfigError
from quark_sdk.embedded import EmbeddedError


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
    from quark_sdk import lifecycle_cli

    lifecycle_cli.add_module_actions(listing)
    lifecycle_cli.add_commands(sub)

    docs = sub.add_parser("docs", help="write OpenAPI (per module) and AsyncAPI (events) documents")
    docs.add_argument("--out", default="docs/api")
    docs.add_argument("--modules", help="comma-separated subset of the installed modules ('' for none)")
    docs.add_argument("--with", dest="with_modules", action="append", default=[], metavar="REF")
    docs.set_defaults(func=cmd_docs)

    create = sub.add_parser("create", help="scaffold a new module that docks")
    create.add_argument("name")
    create.add_argument("--dir", default="services")
    create.add_argument("--port", type=int, help="fleet port (default: the first free one from 3100 in the tree)")
    create.set_defaults(func=cmd_create)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    builtin = {"dev", "serve", "migrate", "modules", "create", "docs", "install", "upgrade", "remove", "provision",
               "purge", "-h", "--help"}
    try:
        # Module commands need the modules loaded; the built-in ones do not pay for it.
        if not argv or argv[0] in {"-h", "--help"}:
            modules = installed_modules(broken=[])  # the help lists the modules' commands too (create-admin…)
        else:
            modules = installed_modules() if argv[0] not in builtin else []
        if (argv and argv[0] in {"migrate", "serve"}) or (modules and argv and argv[0] not in builtin):
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
