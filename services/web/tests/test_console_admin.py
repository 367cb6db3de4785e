"""The console's users, operator and AI pages against the real modules (auth, user, blog, AI and the hub
in-process): every route refuses a person without the role; an admin administers an account; an operator
replays a dead-lettered event after fixing its cause and the consumer applies it once."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from webkit import BASE, PASSWORD, Browser, Station, sign_up, start_station, wait_profile

from quark_auth.accounts import create_admin
from quark_sdk.testing import QuarkTestEnv, eventually

ANY = str(uuid.uuid4())
# (method, path, needs): every console route of users, operator and AI, and the role set it needs.
ROUTES: list[tuple[str, str, str]] = [
    ("GET", "/console/users", "admin"),
    ("GET", f"/console/users/{ANY}", "admin"),
    ("POST", f"/console/users/{ANY}/roles", "admin"),
    ("POST", f"/console/users/{ANY}/roles/moderator/revoke", "admin"),
    ("POST", f"/console/users/{ANY}/sessions/revoke", "admin"),
    ("POST", f"/console/users/{ANY}/password-reset", "admin"),
    ("POST", f"/console/users/{ANY}/suspend", "admin"),
    ("POST", f"/console/users/{ANY}/unsuspend", "admin"),
    ("GET", "/console/ai", "admin"),
    ("POST", "/console/ai/thresholds", "admin"),
    ("GET", "/console/operator", "operator"),
    ("GET", "/console/operator/infra", "operator"),
    ("GET", "/console/operator/dead-letters", "operator"),
    ("GET", "/console/operator/dead-letters/1", "operator"),
    ("POST", "/console/operator/dead-letters/1/replay", "operator"),
    ("POST", "/console/operator/dead-letters/1/discard", "operator"),
    ("GET", "/console/operator/logs", "operator"),
    ("POST", "/console/operator/modules/blog/disable", "operator"),
    ("POST", "/console/operator/modules/blog/enable", "operator"),
    ("POST", "/console/operator/modules/blog/upgrade", "operator"),
    ("POST", "/console/operator/modules/blog/remove", "operator"),
]
FORM = {"role": "moderator", "threshold": "0.5", "reason": "test"}


@pytest.fixture
async def console(quark: QuarkTestEnv, tmp_path: Path) -> AsyncIterator[Station]:
    s = await start_station(quark, tmp_path, with_media=False, with_ai=True, with_hub=True)
    hub = s.modules["hub"]
    # The hub reaches the instances it fans out to through this station's gateway (no sockets in-process).
    hub.app.state.operator_transport = httpx.ASGITransport(app=s.gateway)
    api = s.api()
    for name, m in s.modules.items():
        manifest = m.ctx.manifest.model_dump(mode="json")
        resp = await api.post("/api/v1/hub/modules/register", json={
            "manifest": manifest, "instance_url": BASE, "health_url": f"{BASE}/health/{name}"})
        assert resp.status_code == 201, resp.text
    try:
        yield s
    finally:
        await s.close()


async def make_admin(station: Station, username: str, *extra_roles: str) -> Browser:
    """An admin made as `quark create-admin` does (plus roles granted through auth), signed in in a browser."""
    auth = station.ctx("auth")
    async with auth.database().session() as session:
        user = await create_admin(session, auth.runtime, username=username, email=f"{username}@example.com",
                                  password=PASSWORD, force=True)
    api = station.api()
    if extra_roles:
        token = (await api.post("/api/v1/auth/login", json={"login": username, "password": PASSWORD})).json()
        for role in extra_roles:
            granted = await api.post(f"/api/v1/auth/admin/users/{user.id}/roles", json={"role": role},
                                     headers={"Authorization": f"Bearer {token['access_token']}"})
            assert granted.status_code == 200, granted.text
    b = station.browser()
    await b.get("/login")
    assert (await b.post("/login", {"login": username, "password": PASSWORD})).status_code == 303
    return b


async def send(b: Browser, method: str, path: str) -> httpx.Response:
    return await (b.get(path) if method == "GET" else b.post(path, FORM))


async def test_every_console_route_refuses_people_without_the_role(console: Station) -> None:
    anonymous = console.browser()
    person = console.browser()
    await sign_up(console, person, "pat", verify=False)
    admin = await make_admin(console, "root")  # an admin, not an operator
    for method, path, needs in ROUTES:
        # Anonymous: to the sign-in page (a GET) or refused (a POST without a session's CSRF cookie).
        resp = await send(anonymous, method, path)
        assert resp.status_code in (303, 403), (method, path, resp.status_code)
        if resp.status_code == 303:
            assert resp.headers["location"].startswith("/login?next="), (method, path)
        resp = await send(person, method, path)
        assert resp.status_code == 403, (method, path, resp.status_code)
        assert "This part of the console is not open to you." in resp.text
        if needs == "operator":
            resp = await send(admin, method, path)
            assert resp.status_code == 403, (method, path, "admin without operator", resp.status_code)
    # What the admin may open, the admin gets (and the page links only the parts open to them).
    page = await admin.get("/console/users")
    assert page.status_code == 200 and 'href="/console/users"' in page.text
    assert 'href="/console/operator"' not in page.text


async def test_an_admin_administers_an_account(console: Station) -> None:
    admin = await make_admin(console, "root")
    victim = console.browser()
    uid = await sign_up(console, victim, "mallory")
    await wait_profile(console, "mallory")

    listing = await admin.get("/console/users?q=mall")
    assert listing.status_code == 200 and 'data-user="mallory"' in listing.text
    assert 'data-user="root"' not in listing.text
    detail = await admin.get(f"/console/users/{uid}")
    assert detail.status_code == 200 and '<dd id="mfa">off</dd>' in detail.text
    assert re.search(r'<dd id="active-sessions">1</dd>', detail.text)

    # Grant a role with a reason; the audit event carries both.
    granted = await admin.post(f"/console/users/{uid}/roles", {"role": "moderator", "reason": "helps out"})
    assert granted.status_code == 303 and granted.headers["location"] == f"/console/users/{uid}"
    assert "moderator" in (await admin.get(f"/console/users/{uid}")).text

    # Suspend: the user service decides, auth enforces (the victim is signed out and cannot sign in).
    suspended = await admin.post(f"/console/users/{uid}/suspend", {"reason": "spam wave"})
    assert suspended.status_code == 303
    page = await admin.get(f"/console/users/{uid}")
    assert "suspended: spam wave" in page.text and 'id="unsuspend-form"' in page.text

    async def auth_refuses() -> bool:
        resp = await console.api().post("/api/v1/auth/login", json={"login": "mallory", "password": PASSWORD})
        return resp.status_code == 403

    await eventually(auth_refuses, timeout=20, what="auth applies the suspension")
    again = await admin.post(f"/console/users/{uid}/suspend", {"reason": "twice"})
    assert again.status_code == 409  # already suspended: a human page, nothing changes

    reinstated = await admin.post(f"/console/users/{uid}/unsuspend", {})
    assert reinstated.status_code == 303

    async def auth_allows() -> bool:
        resp = await console.api().post("/api/v1/auth/login", json={"login": "mallory", "password": PASSWORD})
        return resp.status_code == 200

    await eventually(auth_allows, timeout=20, what="auth applies the reinstatement")

    # Force a password reset: the password stops working, a reset mail is requested, the page says so.
    forced = await admin.post(f"/console/users/{uid}/password-reset", {"reason": "credential stuffing"})
    assert forced.status_code == 303
    page = await admin.get(f"/console/users/{uid}")
    assert 'id="reset-required"' in page.text and '<dd id="active-sessions">0</dd>' in page.text
    assert (await console.api().post("/api/v1/auth/login",
                                     json={"login": "mallory", "password": PASSWORD})).status_code == 401
    token = await console.emailed_token(uid, "reset_password")
    assert len(token) > 20

    # Every action is in the modules' audit events, with the admin as actor and the reason.
    admin_id = (await admin.http.get("/api/v1/web/me")).json()["account"]["id"]
    audit = await outbox(console, "auth")
    assert ("quark.auth.role_changed", admin_id, "helps out") in audit
    assert ("quark.auth.password_reset_forced", admin_id, "credential stuffing") in audit
    suspensions = [(e["data"]["suspended"], e["data"]["actor_id"]) for e in await events(console, "user")
                   if e["type"] == "quark.user.suspended"]
    assert suspensions == [(True, admin_id), (False, admin_id)]

    # An admin cannot force a reset on themself from the console (the module refuses, the page says why).
    own = await admin.post(f"/console/users/{admin_id}/password-reset", {"reason": "oops"})
    assert own.status_code == 422


async def test_a_timed_suspension_from_the_console_says_when_it_ends(console: Station) -> None:
    """The form's duration reaches the user service, which lifts a timed suspension by itself (its own tests);
    the page shows the end; a bad duration is refused by the form and changes nothing."""
    admin = await make_admin(console, "root")
    uid = await sign_up(console, console.browser(), "tim")
    await wait_profile(console, "tim")
    bad = await admin.post(f"/console/users/{uid}/suspend", {"reason": "spam", "duration_hours": "9999"})
    assert bad.status_code in (400, 422)
    assert 'id="suspend-form"' in (await admin.get(f"/console/users/{uid}")).text  # still active
    done = await admin.post(f"/console/users/{uid}/suspend", {"reason": "spam", "duration_hours": "24"})
    assert done.status_code == 303
    page = await admin.get(f"/console/users/{uid}")
    assert 'id="unsuspend-form"' in page.text and 'id="suspended-until"' in page.text
    admin_view = (await console.api().get("/api/v1/users/admin/users", params={"q": "tim"},
                                          headers=await bearer_of(console, "root"))).json()
    [tim] = [u for u in admin_view["items"] if u["username"] == "tim"]
    assert tim["suspended_until"] is not None


async def bearer_of(station: Station, username: str) -> dict[str, str]:
    token = (await station.api().post("/api/v1/auth/login", json={"login": username, "password": PASSWORD})).json()
    return {"Authorization": f"Bearer {token['access_token']}"}


async def outbox(station: Station, module: str) -> list[tuple[str, Any, Any]]:
    return [(e["type"], e["data"].get("actor_id"), e["data"].get("reason")) for e in await events(station, module)]


async def events(station: Station, module: str) -> list[dict[str, Any]]:
    import json

    async with station.ctx(module).database().session() as session:
        rows = (await session.execute(text("SELECT body FROM quark_outbox ORDER BY seq"))).all()
    return [json.loads(r.body) for r in rows]


async def test_ai_thresholds_from_the_console(console: Station) -> None:
    admin = await make_admin(console, "root")
    page = await admin.get("/console/ai")
    assert page.status_code == 200 and 'id="thresholds-form"' in page.text and 'value="0.9"' in page.text
    saved = await admin.post("/console/ai/thresholds", {"threshold": "0.75", "rule:threat": "0.99",
                                                        "reason": "calibration"})
    assert saved.status_code == 303, saved.text
    page = await admin.get("/console/ai")
    assert 'value="0.75"' in page.text and "calibration" in page.text
    changed = [e["data"] for e in await events(console, "ai") if e["type"] == "quark.ai.thresholds_changed"]
    assert changed and changed[0]["threshold"] == 0.75 and changed[0]["rule_scores"] == {"threat": 0.99}
    bad = await admin.post("/console/ai/thresholds", {"threshold": "7", "reason": "x"})
    assert bad.status_code == 422


async def test_an_operator_replays_a_dead_letter_once_its_cause_is_fixed(console: Station) -> None:
    operator = await make_admin(console, "ops", "operator")
    # The cause: a broken trigger in the user service's database refuses one profile.
    user_db = console.ctx("user").database()
    async with user_db.session() as session, session.begin():
        await session.execute(text(
            "CREATE FUNCTION refuse_carol() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            "IF NEW.username = 'carol' THEN RAISE EXCEPTION 'broken migration'; END IF; RETURN NEW; END $$"))
        await session.execute(text("CREATE TRIGGER refuse_carol BEFORE INSERT ON profiles "
                                   "FOR EACH ROW EXECUTE FUNCTION refuse_carol()"))
    carol = console.browser()
    await sign_up(console, carol, "carol", verify=False)

    async def dead_lettered() -> str | None:
        page = await operator.get("/console/operator/dead-letters")
        rows = re.findall(r'data-seq="(\d+)" data-event="[^"]*">\s*<td>.*?</td>\s*<td>([^<]+)<br>', page.text, re.S)
        return next((seq for seq, kind in rows if kind.strip() == "quark.auth.user_registered"), None)

    seq = await eventually(dead_lettered, timeout=60, what="the user_registered event dead-lettered")
    item = await operator.get(f"/console/operator/dead-letters/{seq}")
    assert item.status_code == 200 and "broken migration" in item.text and "user-accounts" in item.text
    event_id = re.search(r'<dd id="event-id">([^<]+)</dd>', item.text)
    assert event_id is not None
    assert (await console.api().get("/api/v1/users/carol")).status_code == 404

    # The other pages show the fleet and the streams.
    overview = await operator.get("/console/operator")
    assert overview.status_code == 200 and 'data-module="user"' in overview.text
    infra = await operator.get("/console/operator/infra")
    assert infra.status_code == 200 and 'data-consumer="user-accounts"' in infra.text and "MiB" in infra.text
    logs = await operator.get("/console/operator/logs?module=user&level=ERROR")
    assert logs.status_code == 200 and "broken migration" in logs.text

    # Fix the cause, replay from the console: the profile appears, applied once; the dead letter is gone.
    async with user_db.session() as session, session.begin():
        await session.execute(text("DROP TRIGGER refuse_carol ON profiles"))
    replayed = await operator.post(f"/console/operator/dead-letters/{seq}/replay", {"reason": "trigger fixed"})
    assert replayed.status_code == 303 and replayed.headers["location"] == "/console/operator/dead-letters"
    await wait_profile(console, "carol")
    async with user_db.session() as session:
        applied = (await session.execute(text(
            "SELECT count(*) FROM quark_inbox WHERE event_id = :e"), {"e": event_id.group(1)})).scalar()
        profiles = (await session.execute(text("SELECT count(*) FROM profiles WHERE username = 'carol'"))).scalar()
    assert applied == 1 and profiles == 1
    assert f'data-seq="{seq}"' not in (await operator.get("/console/operator/dead-letters")).text
    # The replay is audited by the hub, with the operator and the reason.
    audit = [e["data"] for e in await events(console, "hub") if e["type"] == "quark.hub.dead_letter_replayed"]
    assert [(a["event_id"], a["reason"]) for a in audit] == [(event_id.group(1), "trigger fixed")]
    # Replaying a dead letter that is gone is a human 404, not a crash.
    assert (await operator.post(f"/console/operator/dead-letters/{seq}/replay", {"reason": ""})).status_code == 404


async def test_an_operator_drains_and_re_enables_a_module_from_the_console(console: Station) -> None:
    """The lifecycle buttons call the hub's lifecycle API (docs/hub.md) with the operator's own token: the
    hub records who did it."""
    operator = await make_admin(console, "ops", "operator")
    token = (await console.api().post("/api/v1/auth/login", json={"login": "ops", "password": PASSWORD})).json()
    bearer = {"Authorization": f"Bearer {token['access_token']}"}

    async def lifecycle() -> dict[str, Any]:
        resp = await console.api().get("/api/v1/hub/modules/ai/lifecycle", headers=bearer)
        assert resp.status_code == 200, resp.text
        body: dict[str, Any] = resp.json()
        return body

    drained = await operator.post("/console/operator/modules/ai/disable", {"to_version": ""})
    assert drained.status_code == 303 and drained.headers["location"] == "/console/operator"
    state = await lifecycle()
    assert state["state"] == "disabled" and state["updated_by"]
    enabled = await operator.post("/console/operator/modules/ai/enable", {"to_version": ""})
    assert enabled.status_code == 303
    assert (await lifecycle())["state"] == "enabled"
    # A plain admin (not an operator) cannot press the buttons; the hub itself refuses a plain user.
    admin = await make_admin(console, "root")
    assert (await admin.post("/console/operator/modules/ai/disable", {"to_version": ""})).status_code == 403
    await sign_up(console, console.browser(), "pat")
    pat = (await console.api().post("/api/v1/auth/login", json={"login": "pat", "password": PASSWORD})).json()
    refused = await console.api().post("/api/v1/hub/modules/ai/disable",
                                       headers={"Authorization": f"Bearer {pat['access_token']}"})
    assert refused.status_code == 403, refused.text
    assert (await lifecycle())["state"] == "enabled"
