"""docker-compose.yml's Vault and MinIO init jobs, executed against real servers when their binaries are on this
machine (`vault`; `minio` and `mc`), with the job's own environment from the compose file (service host names
mapped to the local servers). Nothing is downloaded at run time: without the binaries each test skips and says
which one is missing (CI images that carry them run these)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fleetkit import DEPLOY, environment, load_compose

from quark_sdk.testing import wait_until

pytestmark = [pytest.mark.fleet]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, proc: subprocess.Popen[bytes], what: str, timeout: float = 60) -> None:
    def listening() -> bool:
        assert proc.poll() is None, f"{what} exited with {proc.returncode}"
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", port)) == 0

    wait_until(listening, timeout=timeout, interval=0.1, what=f"{what} listening on {port}")


def require(*tools: str) -> None:
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        pytest.skip(f"{', '.join(missing)} not installed here (not a pip wheel; nothing is downloaded at run time)")


@pytest.fixture
def services() -> dict[str, dict[str, Any]]:
    compose: dict[str, dict[str, Any]] = load_compose()["services"]
    return compose


@pytest.fixture
def vault(services: dict[str, dict[str, Any]]) -> Iterator[str]:
    require("vault")
    port = free_port()
    token = environment(services["vault"])["VAULT_DEV_ROOT_TOKEN_ID"]
    proc = subprocess.Popen(["vault", "server", "-dev", f"-dev-listen-address=127.0.0.1:{port}",
                             f"-dev-root-token-id={token}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(port, proc, "vault server -dev")
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_vault_init_job_runs_twice_and_each_module_reads_only_its_own(services: dict[str, dict[str, Any]],
                                                                      vault: str) -> None:
    import hvac

    job = services["vault-init"]
    assert job["entrypoint"] == ["python", "/deploy/vault/init_vault.py"]
    env = {**os.environ, **environment(job), "QUARK_VAULT_ADDR": vault}
    for attempt in ("first", "again"):  # the job runs on every `docker compose up`
        done = subprocess.run([sys.executable, str(DEPLOY / "vault" / "init_vault.py")], env=env,
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, f"{attempt}: {done.stdout}\n{done.stderr}"
    for name, svc in services.items():
        module_env = environment(svc)
        role = module_env.get("QUARK_VAULT_ROLE_ID")
        if not role or name.endswith("-migrate"):
            continue
        client = hvac.Client(url=vault)
        client.auth.approle.login(role_id=role, secret_id=module_env["QUARK_VAULT_SECRET_ID"])
        module = role.removeprefix("quark-")
        own = client.secrets.kv.v2.read_secret_version(path=f"quark/{module}/client", mount_point="secret",
                                                       raise_on_deleted_version=True)
        assert own["data"]["data"], name
        other = "auth" if module != "auth" else "blog"
        with pytest.raises(hvac.exceptions.Forbidden):
            client.secrets.kv.v2.read_secret_version(path=f"quark/{other}/client", mount_point="secret",
                                                     raise_on_deleted_version=True)


def test_minio_init_job_runs_twice_and_the_media_user_is_confined(services: dict[str, dict[str, Any]],
                                                                  tmp_path: Path) -> None:
    require("minio", "mc")
    job = services["minio-init"]
    assert job["entrypoint"] == ["/bin/sh", "/deploy/minio/init.sh"]
    port = free_port()
    server_env = {**os.environ, **environment(services["minio"])}
    proc = subprocess.Popen(["minio", "server", str(tmp_path / "data"), "--address", f"127.0.0.1:{port}",
                             "--console-address", f"127.0.0.1:{free_port()}"], env=server_env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(port, proc, "minio server")
        env = {**os.environ, **environment(job), "QUARK_MINIO_URL": f"http://127.0.0.1:{port}",
               "MC_CONFIG_DIR": str(tmp_path / "mc"), "TMPDIR": str(tmp_path)}
        for attempt in ("first", "again"):
            done = subprocess.run(["/bin/sh", str(DEPLOY / "minio" / "init.sh")], env=env, capture_output=True,
                                  text=True, timeout=120)
            assert done.returncode == 0, f"{attempt}: {done.stdout}\n{done.stderr}"
        user = {**env, "MC_CONFIG_DIR": str(tmp_path / "mc-media")}
        alias = ["mc", "alias", "set", "media", f"http://127.0.0.1:{port}", env["QUARK_MEDIA_S3_ACCESS_KEY"],
                 env["QUARK_MEDIA_S3_SECRET_KEY"]]
        assert subprocess.run(alias, env=user, capture_output=True, timeout=60).returncode == 0
        bucket = env["QUARK_MEDIA_BUCKET"]
        assert subprocess.run(["mc", "ls", f"media/{bucket}"], env=user, capture_output=True,
                              timeout=60).returncode == 0
        denied = subprocess.run(["mc", "mb", "media/another-bucket"], env=user, capture_output=True, timeout=60)
        assert denied.returncode != 0  # the media user may touch its bucket only
    finally:
        proc.terminate()
        proc.wait(timeout=30)
