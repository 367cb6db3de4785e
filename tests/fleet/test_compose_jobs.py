"""docker-compose.yml's one-shot migrate jobs, executed: each `<module>-migrate` service runs as a local process
with the compose file's own `command` (`quark …`, the image's ENTRYPOINT) and `environment`, against a real
PostgreSQL initialised the way the `postgres` service initialises it (init-databases.sql with that service's
environment), with the host name `postgres` mapped to the local server and password authentication on — so a
wrong database URL, role, password or command in the compose file fails here, not at the first
`docker compose up`.

The rest of the compose file's wiring is executed elsewhere: test_compose_services.py runs these jobs again
as part of the whole station (with the Vault init job against a Vault HTTP test double), then every
long-running module service with its health check and docking; test_init_scripts.py runs the Vault and MinIO
init jobs against the real servers where their binaries are installed.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from fleetkit import STATELESS, compose_postgres, environment, is_job, load_compose

from quark_sdk.embedded import EmbeddedPostgres

pytestmark = [pytest.mark.fleet]

QUARK = Path(sys.executable).with_name("quark")


@pytest.fixture(scope="module")
def services() -> dict[str, dict[str, Any]]:
    compose: dict[str, dict[str, Any]] = load_compose()["services"]
    return compose


@pytest.fixture(scope="module")
def postgres(tmp_path_factory: pytest.TempPathFactory,
             services: dict[str, dict[str, Any]]) -> Iterator[EmbeddedPostgres]:
    with compose_postgres(services, tmp_path_factory.mktemp("compose-pg") / "data") as pg:
        yield pg


def local(value: str, pg: EmbeddedPostgres) -> str:
    """A compose value with the `postgres` service's address replaced by the local server's."""
    return re.sub(r"@postgres:5432/", f"@127.0.0.1:{pg.port}/", value)


def migrate_jobs() -> list[str]:
    compose = load_compose()["services"]
    return sorted(n for n, s in compose.items() if n.endswith("-migrate") and is_job(s))


def test_every_module_has_a_migrate_job(services: dict[str, dict[str, Any]]) -> None:
    modules = {n for n, s in services.items() if (s.get("labels") or {}).get("io.quark.module")}
    assert {f"{m}-migrate" for m in modules if m not in STATELESS} == set(migrate_jobs())


@pytest.mark.parametrize("job", migrate_jobs())
def test_migrate_job_runs_with_the_compose_command_and_environment(job: str, services: dict[str, dict[str, Any]],
                                                                   postgres: EmbeddedPostgres,
                                                                   tmp_path: Path) -> None:
    svc = services[job]
    module = job.removesuffix("-migrate")
    command = [str(c) for c in svc["command"]]
    assert command == ["migrate", module]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("QUARK_", "OTEL_"))}
    env.update({k: local(v, postgres) for k, v in environment(svc).items()})
    for attempt in ("first", "again"):  # a job that is run twice (every `docker compose up`) changes nothing
        done = subprocess.run([str(QUARK), *command], capture_output=True, text=True, env=env, cwd=tmp_path,
                              timeout=180)
        assert done.returncode == 0, f"{job} ({attempt}): {done.stdout}\n{done.stderr}"
    url = env[f"QUARK_{module.upper().replace('-', '_')}_DATABASE_URL"]

    async def check() -> tuple[str, str]:
        conn = await asyncpg.connect(url, timeout=10)  # as the module's own role, with its own password
        try:
            version = await conn.fetchval("SELECT version_num FROM alembic_version")
            owner = await conn.fetchval("SELECT tableowner FROM pg_tables WHERE tablename = 'alembic_version'")
            return str(version), str(owner)
        finally:
            await conn.close()

    version, owner = asyncio.run(check())
    assert version and owner == f"quark_{module.replace('-', '_')}"


def test_a_wrong_password_is_refused(services: dict[str, dict[str, Any]], postgres: EmbeddedPostgres) -> None:
    """The check above means something: the local server really checks the roles' passwords."""
    url = local(environment(services["user-migrate"])["QUARK_USER_DATABASE_URL"], postgres)
    wrong = re.sub(r"(quark_user:)[^@]+@", r"\1not-the-password@", url)

    async def connect() -> None:
        conn = await asyncpg.connect(wrong, timeout=10)
        await conn.close()

    with pytest.raises(asyncpg.InvalidPasswordError):
        asyncio.run(connect())
