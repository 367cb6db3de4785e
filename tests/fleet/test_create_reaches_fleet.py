"""`quark create` reaches the fleet (issue #20): in a copy of the repository, `quark create bookmarks` and then
the fleet packaging tests of that copy pass with no other edit — compose services, Dockerfile, database role,
Kubernetes entry, image build, quark-manager.sh's module list all follow the new manifest. The repository
itself is never touched."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from fleetkit import REPO

pytestmark = [pytest.mark.fleet]

QUARK = Path(sys.executable).with_name("quark")
# The packaging tests that read the repository's files (not the slow ones that start whole fleets).
PACKAGING = ("test_compose.py", "test_dockerfiles.py", "test_manager.py", "test_workflows.py",
             "test_init_databases.py", "test_k8s.py", "test_gateway.py", "test_observability.py",
             "test_vault_init.py")


def copy_of_the_repo(target: Path) -> Path:
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                           capture_output=True, check=True).stdout.split(b"\0")
    for raw in files:
        rel = raw.decode()
        src = REPO / rel
        if rel and src.is_file():
            dst = target / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst)
    return target


def test_create_bookmarks_then_the_fleet_tests_pass(tmp_path: Path) -> None:
    if not (REPO / ".git").exists():
        pytest.skip("not a git checkout: the copy is made from git's file list")
    repo = copy_of_the_repo(tmp_path / "repo")
    (repo / ".venv").symlink_to(Path(sys.executable).parents[1])  # quark-manager.sh looks for .venv/bin/quark
    created = subprocess.run([str(QUARK), "create", "bookmarks"], cwd=repo, capture_output=True, text=True,
                             timeout=120)
    assert created.returncode == 0, created.stdout + created.stderr
    manifest = yaml.safe_load((repo / "services/bookmarks/module-manifest.yaml").read_text())
    ports = [yaml.safe_load(p.read_text())["port"] for p in
             [REPO / "plugin-hub/module-manifest.yaml", *REPO.glob("services/*/module-manifest.yaml")]]
    assert manifest["port"] not in ports and manifest["port"] >= 3100  # a free port, not 3100 for everyone
    assert (repo / "services/bookmarks/Dockerfile").exists()
    assert "bookmarks-migrate:" in (repo / "docker-compose.yml").read_text()
    assert "CREATE ROLE quark_bookmarks " in (repo / "init-databases.sql").read_text()
    assert (repo / "deploy/k8s/modules/bookmarks.yaml").exists()

    again = subprocess.run([str(QUARK), "create", "bookmarks"], cwd=repo, capture_output=True, text=True,
                           timeout=120)
    assert again.returncode == 2 and "already exists" in again.stderr

    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "not slow",
                           f"--basetemp={tmp_path / 'bt'}", *(f"tests/fleet/{t}" for t in PACKAGING)],
                          cwd=repo, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert " passed" in done.stdout
