"""Run docker-compose.yml services as local processes, wired as Compose wires the containers.

What a container gets, and what it becomes here:

* its image's ENTRYPOINT + CMD (from the service's Dockerfile) or the compose `entrypoint`/`command`;
* its image's ENV, then the compose `env_file`s, then `environment` — every value as written, except that
  service addresses (`host:port` of a compose service, a bare host name with its `…_PORT` sibling) point at
  the local server standing in for that service, and paths the image or a volume provides (`/var/lib/quark`,
  `/opt/quark/venv`, `/app`, bind mounts) point at their local counterparts;
* its own port: the container's port, seen on the container's loopback by its health check, becomes a free
  local port (`QUARK_<MODULE>_PORT`, and `127.0.0.1:<port>` in the health check);
* its health check: `healthcheck.test` (CMD / CMD-SHELL) run with the same environment and mapping.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fleetkit import REPO, environment

from quark_sdk.testing import wait_until

LOCAL = "127.0.0.1"
VENV = Path(sys.prefix)
# Paths the module images provide (deploy/docker/Dockerfile.module): the virtualenv and the module folders.
IMAGE_PATHS = {"/opt/quark/venv": VENV, "/app": REPO}
_ADDRESS = re.compile(r"(?<=[/@])([A-Za-z0-9][A-Za-z0-9_.-]*):(\d+)")


@dataclass(frozen=True)
class Image:
    """The final stage of a Dockerfile: what a container of it runs and with which environment."""

    entrypoint: list[str]
    cmd: list[str]
    env: dict[str, str]
    workdir: str
    expose: list[int]


def read_dockerfile(path: Path) -> Image:
    lines: list[str] = []
    for raw in path.read_text().splitlines():
        if raw.lstrip().startswith("#"):
            continue
        if lines and lines[-1].endswith("\\"):
            lines[-1] = lines[-1][:-1] + " " + raw.strip()
        else:
            lines.append(raw.strip())
    final = max(i for i, line in enumerate(lines) if line.upper().startswith("FROM "))
    entrypoint: list[str] = []
    cmd: list[str] = []
    env: dict[str, str] = {}
    workdir = "/"
    expose: list[int] = []
    for line in lines[final + 1:]:
        word, _, rest = line.partition(" ")
        word = word.upper()
        if word == "ENV":
            for item in shlex.split(rest):
                key, _, value = item.partition("=")
                env[key] = value
        elif word == "WORKDIR":
            workdir = rest.strip()
        elif word == "EXPOSE":
            expose += [int(p.split("/")[0]) for p in rest.split()]
        elif word in ("ENTRYPOINT", "CMD"):
            line_argv = [str(a) for a in json.loads(rest)] if rest.strip().startswith("[") else ["/bin/sh", "-c", rest]
            if word == "ENTRYPOINT":
                entrypoint = line_argv
            else:
                cmd = line_argv
    return Image(entrypoint, cmd, env, workdir, expose)


def image_of(service: Mapping[str, Any]) -> Image | None:
    build = service.get("build")
    if not isinstance(build, Mapping):
        return None
    return read_dockerfile(REPO / str(build.get("context", ".")) / str(build.get("dockerfile", "Dockerfile")))


def argv(service: Mapping[str, Any], image: Image | None) -> list[str]:
    """What the container runs: compose `entrypoint` replaces the image's (and drops its CMD), `command` its CMD."""
    entrypoint = service.get("entrypoint")
    command = service.get("command")
    if entrypoint is not None:
        ep = [str(x) for x in entrypoint] if isinstance(entrypoint, list) else shlex.split(str(entrypoint))
        cmd: list[str] = []
    else:
        ep = list(image.entrypoint) if image else []
        cmd = list(image.cmd) if image else []
    if command is not None:
        cmd = [str(x) for x in command] if isinstance(command, list) else shlex.split(str(command))
    return ep + cmd


def health_argv(test: Any) -> list[str] | None:
    """A compose `healthcheck.test` as a command line (None: disabled)."""
    if isinstance(test, str):
        return ["/bin/sh", "-c", test]
    kind, *args = [str(x) for x in test]
    if kind == "NONE":
        return None
    if kind == "CMD-SHELL":
        return ["/bin/sh", "-c", args[0]]
    assert kind == "CMD", f"healthcheck.test must start with CMD, CMD-SHELL or NONE, not {kind!r}"
    return args


def duration(value: Any, default: float) -> float:
    """A compose duration (`10s`, `1m30s`, `500ms`) in seconds."""
    if value is None:
        return default
    total = 0.0
    for number, unit in re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h)", str(value)):
        total += float(number) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[unit]
    return total


@dataclass
class HostMap:
    """Compose service addresses -> the local servers standing in for them."""

    endpoints: dict[str, int] = field(default_factory=dict)  # "host:port" -> local port
    paths: dict[str, Path] = field(default_factory=dict)  # container path -> local path
    unknown: set[str] = field(default_factory=set)  # "host:port" met with no local server

    def with_paths(self, paths: Mapping[str, Path]) -> HostMap:
        """The same addresses, plus one service's own paths (its volumes, its data directory)."""
        return HostMap(self.endpoints, {**self.paths, **paths}, self.unknown)

    def add(self, host: str, port: int, local_port: int) -> None:
        self.endpoints[f"{host}:{port}"] = local_port

    @property
    def hosts(self) -> set[str]:
        return {key.split(":")[0] for key in self.endpoints}

    def local_port(self, host: str, port: int | str) -> int:
        return self.endpoints[f"{host}:{port}"]

    def address(self, value: str, own: Mapping[int, int] | None = None) -> str:
        """`host:port` after `//` or `@` (URLs, URL lists) mapped; `127.0.0.1:<port>` to the service's own port."""
        def sub(m: re.Match[str]) -> str:
            host, port = m.group(1), int(m.group(2))
            if host in (LOCAL, "localhost") and own is not None and port in own:
                return f"{LOCAL}:{own[port]}"
            key = f"{host}:{port}"
            if key in self.endpoints:
                return f"{LOCAL}:{self.endpoints[key]}"
            if host not in (LOCAL, "localhost", "0.0.0.0"):
                self.unknown.add(key)
            return m.group(0)

        value = _ADDRESS.sub(sub, value)
        if own is not None:  # the health check's own loopback, written without a scheme
            value = re.sub(r"(?<![\w.:/@])127\.0\.0\.1:(\d+)",
                           lambda m: f"{LOCAL}:{own.get(int(m.group(1)), int(m.group(1)))}", value)
        return value

    def path(self, value: str) -> str:
        for container, local in sorted(self.paths.items(), key=lambda kv: -len(kv[0])):
            if value == container or value.startswith(container + "/"):
                return str(local) + value[len(container):]
        return value

    def env(self, env: Mapping[str, str], own: Mapping[int, int] | None = None) -> dict[str, str]:
        out: dict[str, str] = {}
        for key, value in env.items():
            if value in self.hosts:  # a bare host name, its port in a sibling variable (…_HOST / …_PORT)
                sibling = key[:-5] + "_PORT" if key.endswith("_HOST") else None
                assert sibling and sibling in env, f"{key}={value}: a host name without a …_PORT sibling"
                out[key] = LOCAL
                out[sibling] = str(self.local_port(value, env[sibling]))
            elif key not in out:
                out[key] = self.path(self.address(value, own)) if value.startswith("/") else self.address(value, own)
        return out


def expand(value: str, env: Mapping[str, str]) -> str:
    """$VAR / ${VAR} in a Dockerfile ENV value (PATH=/opt/quark/venv/bin:$PATH)."""
    return re.sub(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?", lambda m: env.get(m.group(1), ""), value)


def container_env(service: Mapping[str, Any], image: Image | None, hosts: HostMap, home: Path,
                  own: Mapping[int, int] | None = None) -> dict[str, str]:
    """The environment the service's container has (image ENV, env_file, environment), mapped to local."""
    base = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home), "LANG": "C.UTF-8"}
    raw: dict[str, str] = {}
    for key, value in (image.env if image else {}).items():
        raw[key] = expand(value, {**base, **raw})
    env_files = service.get("env_file") or []
    for entry in [env_files] if isinstance(env_files, str | dict) else env_files:
        path = entry["path"] if isinstance(entry, dict) else entry
        for line in (REPO / str(path)).read_text().splitlines():
            if line.strip() and not line.lstrip().startswith("#"):
                key, _, value = line.partition("=")
                raw[key.strip()] = value.strip()
    raw.update(environment(service))
    mapped = hosts.env(raw, own)
    if "PATH" in raw:  # the image's PATH, its directories mapped
        mapped["PATH"] = os.pathsep.join(hosts.path(p) for p in raw["PATH"].split(os.pathsep))
    return {**base, **mapped}


def resolve(cmd: Sequence[str], env: Mapping[str, str], hosts: HostMap, own: Mapping[int, int] | None) -> list[str]:
    """A container command line run here: the program found on the container's (mapped) PATH, arguments mapped."""
    import shutil

    program = hosts.path(cmd[0])
    if "/" not in program:
        found = shutil.which(program, path=env.get("PATH"))
        assert found, f"{program!r} is not on the PATH the container has ({env.get('PATH')})"
        program = found
    return [program, *(hosts.path(hosts.address(a, own)) for a in cmd[1:])]


@dataclass
class LocalService:
    """One compose service running as a local process."""

    name: str
    argv: list[str]
    env: dict[str, str]
    cwd: Path
    log: Path
    port: int  # the local port standing in for the container's port
    health: list[str] | None
    health_timeout: float
    proc: subprocess.Popen[bytes] | None = None
    last_check: str = ""

    def start(self) -> LocalService:
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(self.argv, env=self.env, cwd=self.cwd, stdout=out, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True)
        return self

    def tail(self, lines: int = 30) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def healthy(self) -> bool:
        """One run of the compose health check (exit status 0 = healthy); its output kept for the report."""
        assert self.health is not None
        try:
            done = subprocess.run(self.health, env=self.env, cwd=self.cwd, capture_output=True, text=True,
                                  timeout=self.health_timeout)
        except subprocess.TimeoutExpired:
            self.last_check = f"timed out after {self.health_timeout:.0f}s"
            return False
        self.last_check = (done.stdout + done.stderr)[-1500:]
        return done.returncode == 0

    def wait_healthy(self, timeout: float) -> None:
        """Poll the health check as Docker does (no fixed sleeps beyond the polling interval) until it passes."""
        assert self.proc is not None
        proc = self.proc

        def passed() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"{self.name} exited with status {proc.returncode}:\n{self.tail()}")
            return self.healthy()

        try:
            wait_until(passed, timeout=timeout, interval=0.2, what=f"{self.name}'s compose health check")
        except AssertionError as exc:
            if proc.poll() is not None:
                raise
            raise AssertionError(f"{self.name}: its compose health check {self.health} did not pass within "
                                 f"{timeout:.0f}s: {self.last_check}\nlog:\n{self.tail()}") from exc

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)


def bind_mounts(service: Mapping[str, Any]) -> dict[str, Path]:
    """The service's bind mounts (`./x:/y`): container path -> the repository's file or folder."""
    out: dict[str, Path] = {}
    for volume in service.get("volumes") or []:
        source, target = (volume["source"], volume["target"]) if isinstance(volume, dict) \
            else str(volume).split(":")[:2]
        if source.startswith((".", "/")):
            out[target] = (REPO / source).resolve() if source.startswith(".") else Path(source)
    return out


def volume_paths(service: Mapping[str, Any], scratch: Path) -> dict[str, Path]:
    """The service's volumes: bind mounts as above, named volumes -> a new directory under `scratch`."""
    out = bind_mounts(service)
    for volume in service.get("volumes") or []:
        source, target = (volume["source"], volume["target"]) if isinstance(volume, dict) \
            else str(volume).split(":")[:2]
        if not source.startswith((".", "/")):
            out[target] = scratch / source
            out[target].mkdir(parents=True, exist_ok=True)
    return out
