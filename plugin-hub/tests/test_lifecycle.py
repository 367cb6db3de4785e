"""The module lifecycle API against real Redis, PostgreSQL and NATS: admin-only, drain signals, weighted
Traefik services, upgrade retirement, removal, audit events with the actor, state across a hub restart."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hub_testkit import hub_app, manifest, register, registration, start_hub, tap

from quark_hub.app import module as hub_module
from quark_sdk.testing import QuarkTestEnv, RunningModule, assert_problem, eventually

MOD = "/api/v1/hub/modules"


def hb(name: str, iid: str) -> str:
    return f"{MOD}/{name}/instances/{iid}/heartbeat"


def admin(quark: QuarkTestEnv) -> dict[str, str]:
    return quark.bearer(quark.user_token("a0000000-0000-0000-0000-000000000001", roles=("admin",)))


async def traefik(svc: RunningModule) -> dict[str, Any]:
    resp = await svc.client.get("/api/v1/hub/traefik/config")
    assert resp.status_code == 200
    http: dict[str, Any] = resp.json()["http"]
    return http


async def test_lifecycle_writes_are_admin_only(quark: QuarkTestEnv, tmp_path: Path) -> None:
    svc = await start_hub(quark, tmp_path)
    await register(svc, manifest("notes"), "http://127.0.0.1:3101")
    assert_problem(await svc.client.post(f"{MOD}/notes/disable"), 401)
    user = quark.bearer(quark.user_token(roles=("user",)))
    operator = quark.bearer(quark.user_token(roles=("moderator",)))
    other_service = quark.bearer(quark.service_token("blog", ("hub:admin",)))
    for headers in (user, operator, other_service):
        assert_problem(await svc.client.post(f"{MOD}/notes/disable", headers=headers), 403)
        assert_problem(await svc.client.delete(f"{MOD}/notes", headers=headers), 403)
        assert_problem(await svc.client.put(f"{MOD}/notes/traffic", json={"weights": {"1.0.0": 1}},
                                            headers=headers), 403)
    assert (await svc.client.get(f"{MOD}/notes/lifecycle")).json()["state"] == "enabled"  # nothing changed
    # The hub's own service credential (what the CLI signs on the station's host) is an admin.
    hub_cred = quark.bearer(quark.service_token("hub", ()))
    resp = await svc.client.post(f"{MOD}/notes/disable", headers=hub_cred)
    assert resp.status_code == 200 and resp.json()["updated_by"] == "service:hub"
    assert_problem(await svc.client.post(f"{MOD}/nope/disable", headers=hub_cred), 404)
    assert_problem(await svc.client.post(f"{MOD}/Bad_Name/disable", headers=hub_cred), 422)
    assert_problem(await svc.client.post(f"{MOD}/hub/disable", headers=hub_cred), (404, 422))


async def test_disable_drains_and_enable_reverses(quark: QuarkTestEnv, tmp_path: Path) -> None:
    svc = await start_hub(quark, tmp_path)
    mf = manifest("notes", api=["/api/v1/notes"])
    iid = (await register(svc, mf, "http://127.0.0.1:3101"))["instance_id"]
    assert "notes" in (await traefik(svc))["routers"]
    assert (await svc.client.put(hb("notes", iid))).json()["action"] == "serve"

    resp = await svc.client.post(f"{MOD}/notes/disable", headers=admin(quark))
    assert resp.status_code == 200
    view = resp.json()
    assert view["state"] == "disabled" and view["instances"][0]["routed"] is False
    # Routes leave the gateway first; the instance, still registered, is told to drain on its heartbeat.
    config = await traefik(svc)
    assert "notes" not in config["routers"] and "notes" not in config["services"]
    routes = (await svc.client.get("/api/v1/hub/routes")).json()["modules"]
    assert next(m for m in routes if m["name"] == "notes") == {
        "name": "notes", "state": "disabled", "prefixes": ["/api/v1/notes"], "pools": []}
    assert (await svc.client.put(hb("notes", iid))).json()["action"] == "drain"
    assert (await svc.client.delete(f"{MOD}/notes/instances/{iid}")).status_code == 204
    refused = assert_problem(await svc.client.post(f"{MOD}/register", json=registration(mf, "http://127.0.0.1:3101")),
                             423)
    assert refused["type"].endswith("module-disabled")
    # Idempotent: a second disable publishes nothing.
    assert (await svc.client.post(f"{MOD}/notes/disable", headers=admin(quark))).status_code == 200

    assert (await svc.client.post(f"{MOD}/notes/enable", headers=admin(quark))).json()["state"] == "enabled"
    again = await register(svc, mf, "http://127.0.0.1:3101")
    assert again["docked"] is True and "notes" in (await traefik(svc))["routers"]

    async with tap(quark) as t:
        async def audit() -> list[Any]:
            evs = [e for e in await t.events() if e.type.endswith((".disabled", ".enabled"))]
            return evs if len(evs) >= 2 else []
        evs = await eventually(audit, what="lifecycle events on the hub's stream")
    assert [e.type for e in evs] == ["quark.hub.module.disabled", "quark.hub.module.enabled"]
    assert all(e.data == {"module": "notes", "actor_id": "a0000000-0000-0000-0000-000000000001"} for e in evs)
    assert all(e.subject == "notes" for e in evs)
    recent = (await svc.client.get("/api/v1/hub/events")).json()["items"]
    assert any("disabled (draining)" in e["summary"] for e in recent)


async def test_weighted_traffic_and_upgrade_retire_the_old_version(quark: QuarkTestEnv, tmp_path: Path) -> None:
    svc = await start_hub(quark, tmp_path)
    v1 = (await register(svc, manifest("notes", version="1.0.0"), "http://127.0.0.1:3101"))["instance_id"]
    v2 = (await register(svc, manifest("notes", version="1.1.0"), "http://127.0.0.1:3102"))["instance_id"]
    bad = await svc.client.put(f"{MOD}/notes/traffic", json={"weights": {"1.0.0": 50, "2.0.0": 50}},
                               headers=admin(quark))
    assert assert_problem(bad, 422)["errors"][0]["field"] == "weights.2.0.0"
    assert_problem(await svc.client.put(f"{MOD}/notes/traffic", json={"weights": {"1.0.0": 0}},
                                        headers=admin(quark)), 422)
    assert_problem(await svc.client.put(f"{MOD}/notes/traffic", json={"weights": {"1.0.0": 101}},
                                        headers=admin(quark)), 422)

    resp = await svc.client.put(f"{MOD}/notes/traffic", json={"weights": {"1.0.0": 90, "1.1.0": 10}},
                                headers=admin(quark))
    assert resp.status_code == 200 and resp.json()["weights"] == {"1.0.0": 90, "1.1.0": 10}
    services = (await traefik(svc))["services"]
    assert services["notes"] == {"weighted": {"services": [{"name": "notes-v1-0-0", "weight": 90},
                                                           {"name": "notes-v1-1-0", "weight": 10}]}}
    assert services["notes-v1-0-0"]["loadBalancer"]["servers"] == [{"url": "http://127.0.0.1:3101"}]
    assert services["notes-v1-1-0"]["loadBalancer"]["servers"] == [{"url": "http://127.0.0.1:3102"}]

    done = await svc.client.post(f"{MOD}/notes/upgrade", json={"to_version": "1.1.0"}, headers=admin(quark))
    assert done.status_code == 200 and done.json()["retired"] == ["1.0.0"] and done.json()["weights"] == {}
    services = (await traefik(svc))["services"]
    assert services["notes"]["loadBalancer"]["servers"] == [{"url": "http://127.0.0.1:3102"}]
    assert (await svc.client.put(hb("notes", v1))).json()["action"] == "drain"
    assert (await svc.client.put(hb("notes", v2))).json()["action"] == "serve"
    retired = assert_problem(await svc.client.post(f"{MOD}/register", json=registration(
        manifest("notes", version="1.0.0"), "http://127.0.0.1:3103")), 423)
    assert retired["type"].endswith("version-retired")
    async with tap(quark) as t:
        [ev] = await eventually(lambda: t.events(".upgraded"), what="upgraded event")
    assert ev.data["from_versions"] == ["1.0.0"] and ev.data["to_version"] == "1.1.0"


async def test_remove_then_install_again_and_state_survives_a_hub_restart(quark: QuarkTestEnv,
                                                                          tmp_path: Path) -> None:
    settings = await quark.settings(hub_module, **_fast(tmp_path))
    mf = manifest("notes")
    async with hub_app(quark, settings) as (_, client):
        await client.post(f"{MOD}/register", json=registration(mf, "http://127.0.0.1:3101"))
        assert (await client.post(f"{MOD}/notes/disable", headers=admin(quark))).status_code == 200
    async with hub_app(quark, settings) as (_, client):  # a new hub process on the same store
        view = (await client.get(f"{MOD}/notes/lifecycle")).json()
        assert view["state"] == "disabled" and view["updated_by"] == "a0000000-0000-0000-0000-000000000001"
        removed = await client.delete(f"{MOD}/notes", params={"purge_data": "true"}, headers=admin(quark))
        assert removed.status_code == 200 and removed.json()["state"] == "removed"
        refused = assert_problem(await client.post(f"{MOD}/register", json=registration(mf, "http://127.0.0.1:3101")),
                                 423)
        assert refused["type"].endswith("module-removed")
        assert_problem(await client.post(f"{MOD}/notes/enable", headers=admin(quark)), 423)
        back = await client.post(f"{MOD}/notes/installed", json={"version": "1.0.0", "source": "./notes"},
                                 headers=admin(quark))
        assert back.status_code == 200 and back.json()["state"] == "enabled"
        assert back.json()["installed"] == {"version": "1.0.0", "source": "./notes"}
        assert (await client.post(f"{MOD}/register", json=registration(mf, "http://127.0.0.1:3101"))).status_code == 201
    async with tap(quark) as t:
        [ev] = await eventually(lambda: t.events(".removed"), what="removed event")
    assert ev.data == {"module": "notes", "actor_id": "a0000000-0000-0000-0000-000000000001", "purge_data": True}


def _fast(tmp_path: Path) -> dict[str, Any]:
    from hub_testkit import fast

    return fast(tmp_path)
