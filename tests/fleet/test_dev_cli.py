"""`quark` papercuts a new user meets first: the help lists every command, `quark dev` on a busy port is a
one-line error (exit 2) that starts and writes nothing, and "Quark is up" is printed only once the station
answers on its port."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from quark_sdk.cli import installed_modules
from quark_sdk.embedded import free_port
from quark_sdk.testing import wait_until

QUARK = Path(sys.executable).with_name("quark")


def clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("QUARK_")}
    env.update({"QUARK_ENV": "dev", "QUARK_LOG_LEVEL": "WARNING"})
    return env


def test_help_lists_the_modules_commands() -> None:
    if "auth" not in {m.name for m in installed_modules(broken=[])}:
        pytest.skip("the auth module (which brings create-admin) is not installed")
    done = subprocess.run([str(QUARK), "--help"], capture_output=True, text=True, timeout=60, env=clean_env())
    assert done.returncode == 0, done.stderr
    for command in ("create-admin", "dev", "serve", "migrate", "modules", "docs", "create"):
        assert command in done.stdout


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(1)
        yield int(sock.getsockname()[1])


@pytest.mark.parametrize("fleet", [False, True], ids=["embedded", "fleet"])
def test_busy_port_is_one_line_exit_2_and_touches_nothing(busy_port: int, tmp_path: Path, fleet: bool) -> None:
    data = tmp_path / "data"
    cmd = [str(QUARK), "dev", "--port", str(busy_port), "--data-dir", str(data)] + (["--fleet"] if fleet else [])
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=clean_env(), cwd=tmp_path)
    assert done.returncode == 2, done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and f"port {busy_port}" in lines[0] and "in use" in lines[0], done.stderr
    assert "Quark is up" not in done.stdout
    assert not data.exists()  # no embedded server started, no data directory written


@pytest.mark.slow
def test_quark_is_up_only_when_the_port_answers(tmp_path: Path) -> None:
    if "user" not in {m.name for m in installed_modules(broken=[])}:
        pytest.skip("needs the user module")
    port = free_port()
    log = tmp_path / "station.log"
    cmd = [str(QUARK), "dev", "--port", str(port), "--data-dir", str(tmp_path / "data"), "--modules", "user"]
    with open(log, "ab") as out:
        proc = subprocess.Popen(cmd, cwd=tmp_path, env=clean_env(), stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        def banner() -> bool:
            assert proc.poll() is None, log.read_text(errors="replace")[-3000:]
            return "Quark is up" in log.read_text(errors="replace")

        wait_until(banner, timeout=180, interval=0.02, what="the banner")
        # At the moment the banner is there, the station already serves (every module's start-up ran).
        resp = httpx.get(f"http://127.0.0.1:{port}/health/user", timeout=5)
        assert resp.status_code == 200, resp.text
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def test_fleet_without_its_traefik_config_is_one_line_exit_2_and_touches_nothing(tmp_path: Path) -> None:
    data = tmp_path / "data"
    env = {**clean_env(), "QUARK_TRAEFIK_CONFIG": str(tmp_path / "missing.yml")}
    done = subprocess.run([str(QUARK), "dev", "--fleet", "--free-ports", "--port", str(free_port()), "--data-dir",
                           str(data)], capture_output=True, text=True, timeout=60, env=env, cwd=tmp_path)
    if "no modules installed" in done.stderr or "hub" not in {m.name for m in installed_modules(broken=[])}:
        pytest.skip("needs the hub installed")
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.strip().splitlines() == [f"quark: QUARK_TRAEFIK_CONFIG={tmp_path / 'missing.yml'} is not a file"]
    assert not data.exists()
