"""The module as a whole: docking, schema vs migrations, housekeeping, and no 5xx on any input."""

from __future__ import annotations

import time
from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from auth_testkit import API, Auth, FakeClock
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from quark_auth.app import module
from quark_auth.models import Base
from quark_auth.sessions import purge_expired
from quark_sdk.cli import installed_modules
from quark_sdk.outbox import EVENT_METADATA


def test_module_is_installed_and_documents_its_events() -> None:
    found = {m.name: m for m in installed_modules()}
    assert found["auth"].manifest().port == 3001
    assert [c.name for c in found["auth"].commands] == ["create-admin"]
    from quark_auth.events import PUBLISHED

    assert sorted(p.event_type for p in PUBLISHED) == sorted(module.manifest().exposes.events)


async def test_migrations_match_the_models(auth: Auth) -> None:
    def diff(connection: Any) -> list[Any]:
        ctx = MigrationContext.configure(connection, opts={"compare_type": True})
        return list(compare_metadata(ctx, [Base.metadata, EVENT_METADATA]))

    async with auth.svc.ctx.database().engine.connect() as conn:
        assert await conn.run_sync(diff) == []


async def test_health_and_openapi(auth: Auth) -> None:
    ready = await auth.client.get("/health/ready")
    assert ready.status_code == 200 and ready.json()["checks"] == {"database": "ok", "redis": "ok", "nats": "ok"}
    paths = (await auth.client.get("/openapi.json")).json()["paths"]
    assert f"{API}/login" in paths and f"{API}/.well-known/jwks.json" in paths


async def test_purge_drops_spent_rows(auth: Auth) -> None:
    tokens, _ = await auth.user("alice")
    await auth.client.post(f"{API}/refresh", json={"refresh_token": tokens["refresh_token"]})
    await auth.client.post(f"{API}/logout", json={"refresh_token": tokens["refresh_token"]})
    clock = FakeClock(time.time() + 40 * 86400)
    auth.rt.set_clock(clock)
    async with auth.svc.ctx.database().session() as session:
        counts = await purge_expired(session, auth.rt)
    assert counts == {"refresh_tokens": 2, "sessions": 1, "one_time_tokens": 1}
    assert await auth.sql("SELECT id FROM sessions") == []


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=10), inner, max_size=3),
    max_leaves=6,
)
_FIELDS = ["username", "email", "password", "login", "refresh_token", "token", "new_password", "current_password",
           "code", "recovery_code", "mfa_token", "role", "display_name"]
_ENDPOINTS = ["register", "login", "login/mfa", "refresh", "logout", "password", "verify-email/confirm",
              "password-reset/request", "password-reset/confirm", "2fa/confirm", "2fa/disable"]


async def test_no_5xx_on_any_input(auth: Auth) -> None:
    _tokens, headers = await auth.user("alice")
    bodies: list[Any] = []

    @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(st.one_of(_JSON, st.dictionaries(st.sampled_from(_FIELDS), _JSON | st.text(max_size=300), max_size=4)))
    def collect(body: Any) -> None:
        bodies.append(body)

    collect()
    weird = ["\x00" * 20, "é" * 200, "a@b", "' OR 1=1 --", "\ud7ff" * 5, "A" * 600]
    bodies += [{field: value for field in _FIELDS} for value in weird]
    for i, body in enumerate(bodies):
        path = _ENDPOINTS[i % len(_ENDPOINTS)]
        resp = await auth.client.post(f"{API}/{path}", json=body, headers=headers if i % 2 else {})
        assert resp.status_code < 500, (path, body, resp.text)
    for path in ("sessions?cursor=%00", "admin/users?cursor=x", "2fa/qr.png", "sessions?limit=-1"):
        assert (await auth.client.get(f"{API}/{path}", headers=headers)).status_code < 500
    raw = await auth.client.post(f"{API}/login", content=b"\xff\xfe", headers={"content-type": "application/json"})
    assert raw.status_code == 422
    assert (await auth.client.get(f"{API}/me", headers=headers)).status_code in (200, 401)
