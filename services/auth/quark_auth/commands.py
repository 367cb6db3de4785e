"""`quark create-admin`: make the station's first admin from the command line.

The password comes from standard input (`--password-stdin`, for scripts) or an interactive prompt,
never from an argument (it would land in shell history and the process list).
"""

from __future__ import annotations

import argparse
import getpass
import sys
from typing import Any

from quark_auth import service
from quark_sdk.app import ModuleCommand, ServiceContext
from quark_sdk.errors import QuarkError


def add_arguments(parser: Any) -> None:
    parser.add_argument("--username", required=True)
    parser.add_argument("--email", required=True)
    parser.add_argument("--display-name", default=None)
    parser.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    parser.add_argument("--force", action="store_true", help="create an admin even if one exists already")


def read_password(args: argparse.Namespace) -> str | None:
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    if not sys.stdin.isatty():
        print("quark: no terminal to prompt for the password; use --password-stdin", file=sys.stderr)
        return None
    first = getpass.getpass("Password for the new admin: ")
    if first != getpass.getpass("Repeat the password: "):
        print("quark: passwords do not match", file=sys.stderr)
        return None
    return first


async def run(args: argparse.Namespace, ctx: ServiceContext) -> int:
    password = read_password(args)
    if password is None:
        return 2
    rt = ctx.runtime
    try:
        async with ctx.database().session() as session:
            user = await service.create_admin(session, rt, username=args.username, email=args.email,
                                              password=password, display_name=args.display_name, force=args.force)
    except QuarkError as exc:
        print(f"quark: {exc.detail}", file=sys.stderr)
        return 1
    print(f"created admin {user.username} ({user.id})")
    return 0


create_admin_command = ModuleCommand(
    name="create-admin",
    help="create the first admin account (password from --password-stdin or a prompt)",
    run=run,
    add_arguments=add_arguments,
)
