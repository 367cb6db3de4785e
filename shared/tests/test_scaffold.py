"""`quark create NAME` makes a module that passes its own generated tests and lints clean."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from quark_sdk.cli import main
from quark_sdk.testing import QuarkServers


@pytest.mark.slow
def test_created_module_passes_its_own_tests(tmp_path: Path, quark_servers: QuarkServers,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["create", "demo", "--dir", str(tmp_path), "--port", "3950"]) == 0
    target = tmp_path / "demo"
    assert (target / "module-manifest.yaml").exists()
    assert (target / "quark_demo" / "api.py").exists()
    assert "created module demo" in capsys.readouterr().out

    env = {
        **os.environ,
        "PYTHONPATH": str(target),
        "QUARK_TEST_POSTGRES_URL": quark_servers.postgres_url,
        "QUARK_TEST_REDIS_URL": quark_servers.redis_url,
        "QUARK_TEST_NATS_URL": quark_servers.nats_url,
    }
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(target / "tests")],
                         cwd=target, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "3 passed" in run.stdout

    lint = subprocess.run([sys.executable, "-m", "ruff", "check", "."], cwd=target, capture_output=True, text=True)
    assert lint.returncode == 0, lint.stdout


def test_create_refuses_bad_names_and_existing_dirs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["create", "Bad-Name", "--dir", str(tmp_path)]) == 2
    assert "must be 2-21 lowercase" in capsys.readouterr().err
    assert main(["create", "auth", "--dir", str(tmp_path)]) == 2
    assert "reserved" in capsys.readouterr().err
    (tmp_path / "taken").mkdir()
    assert main(["create", "taken", "--dir", str(tmp_path)]) == 2
    assert "already exists" in capsys.readouterr().err
