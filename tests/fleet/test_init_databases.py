"""init-databases.sql, run with psql against the test PostgreSQL exactly as the postgres image runs it:
one database and one least-privilege login role per service, and no role can open another's database."""

from __future__ import annotations

import asyncio
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
from fleetkit import ALL_MODULES, EXTRA_DB_MODULES, REPO

SQL = REPO / "init-databases.sql"
# quark_sdk.app.QuarkModule.database_name
DATABASES = {name.replace("-", "_") for name in (*ALL_MODULES, *EXTRA_DB_MODULES)}
ROLES = {f"quark_{db}" for db in DATABASES}
PASSWORDS = {f"QUARK_{db.upper()}_DB_PASSWORD": f"test-{db}-pw-{os.getpid()}" for db in DATABASES}


def psql_binary() -> Path:
    from quark_sdk.embedded import EmbeddedPostgres

    return EmbeddedPostgres.bin_dir() / "psql"


def run_psql(url: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(psql_binary()), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", url, "-f", str(SQL)],
        capture_output=True, text=True, timeout=120, env={**os.environ, **env},
    )


def with_user(url: str, user: str, database: str, password: str | None = None) -> str:
    parts = urlsplit(url)
    host = parts.hostname or "127.0.0.1"
    netloc = f"{user}:{password}@{host}:{parts.port}" if password else f"{user}@{host}:{parts.port}"
    return urlunsplit((parts.scheme, netloc, "/" + database, "", ""))


async def fetch(url: str, query: str, *args: Any) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(url, timeout=10)
    try:
        return await conn.fetch(query, *args)
    finally:
        await conn.close()


async def snapshot(url: str) -> tuple[set[str], set[str]]:
    dbs = {r["datname"] for r in await fetch(url, "SELECT datname FROM pg_database")}
    roles = {r["rolname"] for r in await fetch(url, "SELECT rolname FROM pg_roles")}
    return dbs, roles


async def cleanup(url: str) -> None:
    conn = await asyncpg.connect(url, timeout=10)
    try:
        for db in sorted(DATABASES):
            await conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
        for role in sorted(ROLES):
            await conn.execute(f"DROP ROLE IF EXISTS {role}")
        await conn.execute("GRANT CONNECT, TEMPORARY ON DATABASE postgres TO PUBLIC")
        await conn.execute("GRANT CONNECT ON DATABASE template1 TO PUBLIC")
    finally:
        await conn.close()


@pytest.fixture(scope="module")
def initialised(quark_servers: Any) -> Iterator[dict[str, Any]]:
    url = quark_servers.postgres_url
    before_dbs, before_roles = asyncio.run(snapshot(url))
    clash = (DATABASES & before_dbs) | (ROLES & before_roles)
    if clash:
        pytest.skip(f"the test PostgreSQL already has {sorted(clash)} (a real installation?); not touching it")
    try:
        # Missing a password: psql stops at once, naming the variable, before creating anything.
        missing = run_psql(url, {k: v for k, v in PASSWORDS.items() if k != "QUARK_HUB_DB_PASSWORD"})
        after_failure = asyncio.run(snapshot(url))
        result = run_psql(url, PASSWORDS)
        after_dbs, after_roles = asyncio.run(snapshot(url))
        yield {"url": url, "missing": missing, "after_failure": after_failure, "before": (before_dbs, before_roles),
               "result": result, "new_dbs": after_dbs - before_dbs, "new_roles": after_roles - before_roles}
    finally:
        asyncio.run(cleanup(url))


def test_a_missing_password_fails_loudly_and_creates_nothing(initialised: dict[str, Any]) -> None:
    missing = initialised["missing"]
    assert missing.returncode != 0
    assert "QUARK_HUB_DB_PASSWORD" in missing.stderr
    assert initialised["after_failure"] == initialised["before"]


def test_creates_exactly_one_database_and_one_role_per_service(initialised: dict[str, Any]) -> None:
    result = initialised["result"]
    assert result.returncode == 0, result.stderr
    assert initialised["new_dbs"] == DATABASES
    assert initialised["new_roles"] == ROLES


async def test_roles_are_least_privilege_and_own_only_their_database(initialised: dict[str, Any]) -> None:
    url = initialised["url"]
    rows = await fetch(url, """
        SELECT r.rolname, r.rolsuper, r.rolcreatedb, r.rolcreaterole, r.rolreplication, r.rolbypassrls,
               r.rolcanlogin, r.rolinherit, a.rolpassword,
               (SELECT count(*) FROM pg_auth_members m WHERE m.member = r.oid) AS memberships,
               (SELECT array_agg(d.datname ORDER BY d.datname) FROM pg_database d WHERE d.datdba = r.oid) AS owns
        FROM pg_roles r JOIN pg_authid a ON a.oid = r.oid WHERE r.rolname = ANY($1::text[])""", sorted(ROLES))
    assert {r["rolname"] for r in rows} == ROLES
    for r in rows:
        db = r["rolname"].removeprefix("quark_")
        assert r["rolcanlogin"]
        assert not any((r["rolsuper"], r["rolcreatedb"], r["rolcreaterole"], r["rolreplication"], r["rolbypassrls"]))
        assert r["memberships"] == 0
        assert list(r["owns"]) == [db]
        assert r["rolpassword"].startswith("SCRAM-SHA-256$"), "passwords must be stored hashed"


async def test_each_role_works_in_its_own_database_only(initialised: dict[str, Any]) -> None:
    url = initialised["url"]
    for db in sorted(DATABASES):
        role, password = f"quark_{db}", PASSWORDS[f"QUARK_{db.upper()}_DB_PASSWORD"]
        own = await asyncpg.connect(with_user(url, role, db, password), timeout=10)
        try:
            # It owns its schema: migrations can create tables; data round-trips.
            await own.execute("CREATE TABLE fleet_probe (id int PRIMARY KEY, v text)")
            await own.execute("INSERT INTO fleet_probe VALUES (1, $1)", db)
            assert await own.fetchval("SELECT v FROM fleet_probe WHERE id = 1") == db
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await own.execute(f'CREATE DATABASE "{db}_extra"')
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await own.execute("CREATE ROLE fleet_probe_role")
        finally:
            await own.close()
        for other in sorted((DATABASES - {db}) | {"postgres", "template1"}):
            with pytest.raises(asyncpg.InsufficientPrivilegeError, match="permission denied for database"):
                conn = await asyncpg.connect(with_user(url, role, other, password), timeout=10)
                await conn.close()


def test_sql_matches_the_module_list() -> None:
    text = SQL.read_text()
    for db in DATABASES:
        assert f'CREATE DATABASE "{db}" WITH OWNER quark_{db}' in text
        assert f"QUARK_{db.upper()}_DB_PASSWORD" in text
    assert "PASSWORD '" not in text, "no literal password in init-databases.sql"
