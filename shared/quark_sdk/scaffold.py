"""`quark create NAME`: a new module with the house layout that docks and passes its own test."""

from __future__ import annotations

import re
from pathlib import Path

from quark_sdk.cli import CliError

TEMPLATES = Path(__file__).parent / "templates" / "module"
NAME = re.compile(r"^[a-z][a-z0-9]{1,20}$")
RESERVED = {"hub", "auth", "user", "blog", "media", "messaging", "ai", "mailer", "moderation", "sdk", "dlq", "test",
            "sample"}


def create_module(name: str, parent: Path, *, port: int | None = None) -> Path:
    """The module's folder from the template; inside the Quark repository also everything the fleet needs
    (quark_sdk.fleetgen: Dockerfile, compose services, database role, Kubernetes entry, image build), on a port
    no other manifest of the tree uses."""
    from quark_sdk import fleetgen

    root = fleetgen.repo_root(parent)
    if port is None:
        port = fleetgen.allocate_port(root) if root is not None else fleetgen.FIRST_PORT
    elif root is not None and port in fleetgen.module_ports(root).values():
        taken = next(n for n, p in fleetgen.module_ports(root).items() if p == port)
        raise CliError(f"port {port} is already module {taken}'s (leave --port out to get a free one)")
    if not NAME.fullmatch(name):
        raise CliError(f"module name {name!r} must be 2-21 lowercase letters/digits, starting with a letter")
    if name in RESERVED:
        raise CliError(f"module name {name!r} is reserved")
    if not 1024 <= port <= 65535:
        raise CliError(f"port {port} must be between 1024 and 65535")
    target = parent / name
    if target.exists():
        raise CliError(f"{target} already exists")
    values = {"{{name}}": name, "{{Name}}": name.capitalize(), "{{NAME}}": name.upper(), "{{port}}": str(port)}
    for src in sorted(TEMPLATES.rglob("*")):
        if src.is_dir() or src.name.endswith((".pyc",)) or "__pycache__" in src.parts:
            continue
        rel = str(src.relative_to(TEMPLATES)).removesuffix(".tmpl")
        rel = rel.replace("pkg/", f"quark_{name}/", 1) if rel.startswith("pkg/") else rel
        text = src.read_text()
        for key, value in values.items():
            text = text.replace(key, value)
            rel = rel.replace(key, value)
        out = target / rel
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)
    if root is not None:
        fleetgen.generate(root, name, target, port)
    return target
