"""The `quark` command: run the station (embedded or as a fleet), migrate, list and scaffold modules.

Modules are found through the `quark.modules` entry point group: a package
that declares `name = "quark_name.app:module"` is part of the station once it
is installed.

The package: ``loading`` (finding and loading modules), ``commands`` (modules, migrate, create, docs, module
commands), ``dev`` and ``fleet`` (quark dev, one process or a fleet), ``serve`` (quark serve), ``parser``
(the argument parser and `main`). `python -m quark_sdk.cli` runs ``__main__``. Import from ``quark_sdk.cli``.
"""

from __future__ import annotations

from quark_sdk.cli.loading import START_ORDER, CliError, installed_modules, load_module, use_running_embedded_servers
from quark_sdk.cli.parser import build_parser, main

__all__ = [
    "START_ORDER",
    "CliError",
    "build_parser",
    "installed_modules",
    "load_module",
    "main",
    "use_running_embedded_servers",
]
