"""The small commands: quark modules, migrate, create, docs, and the commands modules add."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from quark_sdk.cli.loading import CliError, _has_database, installed_modules, load_module

# --------------------------------------------------------------------------- quark modules


def cmd_modules(args: argparse.Namespace) -> int:
    if getattr(args, "action", None):
        from quark_sdk.lifecycle_cli import cmd_enable_disable

        if not args.name:
            raise CliError(f"quark modules {args.action} NAME: which module?")
        return cmd_enable_disable(args)
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
        port = mf["port"] or "-"
        print(f"{mf['name']:<10} {mf['version']:<8} port {port:<5} api {', '.join(mf['exposes']['api']) or '-'}")
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


# --------------------------------------------------------------------------- quark create


def cmd_create(args: argparse.Namespace) -> int:
    from quark_sdk.fleetgen import repo_root
    from quark_sdk.scaffold import create_module

    target = create_module(args.name, Path(args.dir), port=args.port)
    print(f"created module {args.name} in {target}")
    if repo_root(Path(args.dir)) is not None:
        print("and its Dockerfile, docker-compose.yml services, init-databases.sql role, Kubernetes entry and image "
              "build (docs/modules.md)")
    print(f"next: pip install -e {target} && quark modules && python -m quark_sdk.natsauth deploy/nats/nats.conf")
    return 0


# --------------------------------------------------------------------------- quark docs


def cmd_docs(args: argparse.Namespace) -> int:
    from quark_sdk.apidocs import write_api_docs

    modules = [] if args.modules == "" else installed_modules(args.modules.split(",") if args.modules else None)
    modules += [load_module(ref) for ref in args.with_modules]
    for path in write_api_docs(modules, Path(args.out)):
        print(f"wrote {path}")
    return 0


# --------------------------------------------------------------------------- module commands (quark NAME ...)


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
