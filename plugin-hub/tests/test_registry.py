"""Registry CRUD against real Redis, PostgreSQL and NATS: leases, several instances, bad input, limits, restart."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
from hub_testkit import (
    fake_instance,
    hub_app,
    instances,
    manifest,
    register,
    registration,
    registry_state,
    start_hub,
    tap,
)

from quark_hub.app import module as hub_module
from quark_sdk.testing import QuarkTestEnv, eventually

REGISTER = "/api/v1/hub/modules/register"


def hb(name: str, iid: str) -> str:
    return f"/api/v1/hub/modules/{name}/instances/{iid}/heartbeat"


def inst(name: str, iid: str) -> str:
    return f"/api/v1/hub/modules/{name}/instances/{iid}"


async def test_register_heartbeat_deregister_round_trip(quark: QuarkTestEnv, tmp_path: Path) -> None:
    svc = await start_hub(quark, tmp_path, lease_ttl=9)
    mf = manifest("blog", api=["/api/v1/posts", "/api/v1/feed"], events=["quark.post.published"],
                  consumes=["quark.user.followed"])
    docked = await register(svc, mf, "http://127.0.0.1:3004")
    assert docked["lease_ttl"] == 9 and docked["heartbeat_interval"] == 3 and docked["docked"] is True
    iid = docked["instance_id"]

    [blog] = (await svc.client.get("/api/v1/hub/services")).json()["items"]
    assert blog["name"] == "blog" and blog["health"] == "healthy"
    assert blog["publishes"] == ["quark.post.published"] and blog["consumes"] == ["quark.user.followed"]
    assert blog["manifest"]["exposes"]["api"] == ["/api/v1/posts", "/api/v1/feed"]
    [i] = blog["instances"]
    assert i["instance_id"] == iid and i["health_url"] == "http://127.0.0.1:3004/health/ready"
    assert blog["last_heartbeat"] == i["last_heartbeat"]

    renewed = await svc.client.put(hb("blog", iid))
    assert renewed.status_code == 200 and renewed.json() == {"instance_id": iid, "lease_ttl": 9, "health": "healthy",
                                                          "action": "serve"}
    again = await register(svc, mf, "http://127.0.0.1:3004", instance_id=iid)
    assert again["instance_id"] == iid and again["docked"] is False
    assert len(await instances(svc.client, "blog")) == 1

    gone = await svc.client.delete(inst("blog", iid))
    assert gone.status_code == 204
    assert await registry_state(svc.client) == []
    for resp in (await svc.client.delete(inst("blog", iid)), await svc.client.put(hb("blog", iid))):
        assert resp.status_code == 404 and resp.headers["content-type"] == "application/problem+json"

    async with tap(quark) as events:
        got = await eventually(lambda: _types(events, 2), what="docked and undocked on NATS")
    assert [e.type for e in got] == ["quark.hub.module.docked", "quark.hub.module.undocked"]
    assert got[0].data["instance_id"] == iid and got[0].data["api"] == ["/api/v1/posts", "/api/v1/feed"]
    assert got[1].data["reason"] == "deregistered" and got[1].subject == f"blog/{iid}"
    assert got[0].source == "quark/hub"


async def _types(events: Any, n: int) -> Any:
    got = await events.events()
    return got if len(got) >= n else None


async def test_instances_of_one_module_are_kept_apart(quark: QuarkTestEnv, tmp_path: Path) -> None:
    svc = await start_hub(quark, tmp_path)
    mf = manifest("blog")
    a = (await register(svc, mf, "http://127.0.5.1:3004"))["instance_id"]
    b = (await register(svc, mf, "http://127.0.5.2:3004"))["instance_id"]
    assert a != b
    assert {i["instance_url"] for i in await instances(svc.client, "blog")} == {"http://127.0.5.1:3004",
                                                                                "http://127.0.5.2:3004"}
    assert (await svc.client.delete(inst("blog", a))).status_code == 204
    assert [i["instance_id"] for i in await instances(svc.client, "blog")] == [b]
    assert (await svc.client.put(hb("blog", b))).status_code == 200
    # An instance id belongs to its module: the same id under another name is unknown.
    assert (await svc.client.put(hb("media", b))).status_code == 404


async def test_a_new_process_at_the_same_address_replaces_the_old_instance(quark: QuarkTestEnv,
                                                                             tmp_path: Path) -> None:
    svc = await start_hub(quark, tmp_path)
    old = (await register(svc, manifest("blog"), "http://127.0.5.1:3004"))["instance_id"]
    new = (await register(svc, manifest("blog", version="1.1.0"), "http://127.0.5.1:3004"))["instance_id"]
    [only] = await instances(svc.client, "blog")
    assert only["instance_id"] == new and only["version"] == "1.1.0"
    async with tap(quark) as events:
        undocked = await eventually(lambda: events.events(".undocked"))
    assert undocked[0].data["instance_id"] == old and undocked[0].data["reason"] == "replaced"


def _mutations() -> list[tuple[str, Any, str]]:
    """(case, how to spoil a good registration, the field the 422 must name)."""

    def mf(**changes: Any) -> Any:
        def spoil(body: dict[str, Any]) -> None:
            for path, value in changes.items():
                target = body["manifest"]
                *parents, leaf = path.split("__")
                for p in parents:
                    target = target[p]
                if value is _DELETE:
                    del target[leaf]
                else:
                    target[leaf] = value
        return spoil

    def top(key: str, value: Any) -> Any:
        def spoil(body: dict[str, Any]) -> None:
            if value is _DELETE:
                del body[key]
            else:
                body[key] = value
        return spoil

    return [
        ("missing name", mf(name=_DELETE), "manifest.name"),
        ("bad name", mf(name="Blog Service"), "manifest.name"),
        ("bad version", mf(version="one"), "manifest.version"),
        ("newer manifest_version", mf(manifest_version=99), "manifest.manifest_version"),
        ("port out of range", mf(port=70000), "manifest.port"),
        ("unknown type", mf(type="daemon"), "manifest.type"),
        ("unknown field", mf(colour="blue"), "manifest.colour"),
        ("bad route prefix", mf(exposes__api=["api/no-slash"]), "manifest.exposes.api"),
        ("bad event name", mf(exposes__events=["post-published"]), "manifest.exposes.events"),
        ("bad consumed event", mf(consumes=["nope"]), "manifest.consumes"),
        ("bad scope", mf(scopes=["Not A Scope"]), "manifest.scopes"),
        ("requires not bool", mf(requires__database="maybe"), "manifest.requires.database"),
        ("manifest not an object", top("manifest", "blog"), "manifest"),
        ("missing manifest", top("manifest", _DELETE), "manifest"),
        ("missing instance_url", top("instance_url", _DELETE), "instance_url"),
        ("ftp instance_url", top("instance_url", "ftp://127.0.5.1/"), "instance_url"),
        ("instance_url with path", top("instance_url", "http://127.0.5.1:3004/api"), "instance_url"),
        ("instance_url with credentials", top("instance_url", "http://u:p@127.0.5.1:3004"), "instance_url"),
        ("health_url elsewhere", top("health_url", "http://127.9.9.9/latest"), "health_url"),
        ("bad instance_id", top("instance_id", "../../etc"), "instance_id"),
        ("unknown top-level field", top("weight", 3), "weight"),
    ]


_DELETE = object()


@pytest.mark.parametrize(("case", "spoil", "field"), _mutations(), ids=[m[0] for m in _mutations()])
async def test_malformed_registration_is_a_422_naming_the_field(quark: QuarkTestEnv, tmp_path: Path, case: str,
                                                                 spoil: Any, field: str) -> None:
    svc = await start_hub(quark, tmp_path)
    await register(svc, manifest("media", api=["/api/v1/media"]), "http://127.0.5.9:3003")
    before = await registry_state(svc.client)
    body = registration(manifest("blog"), "http://127.0.5.1:3004")
    spoil(body)
    resp = await svc.client.post(REGISTER, json=body)
    assert resp.status_code == 422, (case, resp.text)
    assert resp.headers["content-type"] == "application/problem+json"
    problem = resp.json()
    assert problem["errors"][0]["field"] == field, problem
    assert field in problem["detail"]
    assert await registry_state(svc.client) == before


async def test_garbage_bodies_are_4xx_and_change_nothing(quark: QuarkTestEnv, tmp_path: Path) -> None:
    svc = await start_hub(quark, tmp_path, max_register_body=2048)
    await register(svc, manifest("media", api=["/api/v1/media"]), "http://127.0.5.9:3003")
    before = await registry_state(svc.client)
    cases = [
        (b"not json", {"content-type": "application/json"}),
        (b"[1, 2, 3]", {"content-type": "application/json"}),
        (b"null", {"content-type": "application/json"}),
        (b"{" * 5000, {"content-type": "application/json"}),
        (b"", {}),
    ]
    for raw, headers in cases:
        resp = await svc.client.post(REGISTER, content=raw, headers=headers)
        assert 400 <= resp.status_code < 500, (raw[:20], resp.status_code, resp.text)
        assert resp.headers["content-type"] == "application/problem+json"
    assert (await svc.client.put("/api/v1/hub/modules/NOT_A_NAME/instances/x/heartbeat")).status_code == 404
    # A NUL can never be part of a name: refused as invalid input before any lookup.
    assert (await svc.client.put("/api/v1/hub/modules/blog/instances/%00/heartbeat")).status_code == 422
    assert (await svc.client.delete(inst("media", "no-such-instance"))).status_code == 404
    assert await registry_state(svc.client) == before


async def test_route_prefix_owned_by_another_module_is_a_conflict(quark: QuarkTestEnv, tmp_path: Path) -> None:
    svc = await start_hub(quark, tmp_path)
    await register(svc, manifest("blog", api=["/api/v1/posts"]), "http://127.0.5.1:3004")
    before = await registry_state(svc.client)
    for prefix in ("/api/v1/posts", "/api/v1/posts/admin", "/api/v1"):
        resp = await svc.client.post(REGISTER, json=registration(manifest("evil", api=[prefix]), "http://127.6.6.6:80"))
        assert resp.status_code == 409, resp.text
        assert resp.json()["errors"][0]["field"] == "manifest.exposes.api"
    assert await registry_state(svc.client) == before
    # Neighbouring, non-overlapping prefixes are fine.
    await register(svc, manifest("feeds", api=["/api/v1/postsfeed"]), "http://127.0.5.2:80")


async def test_only_one_module_may_be_the_catch_all(quark: QuarkTestEnv, tmp_path: Path) -> None:
    """`/` in `exposes.api` (every unclaimed path, the web client) belongs to one module, like a prefix."""
    svc = await start_hub(quark, tmp_path)
    web = manifest("web", api=["/api/v1/web", "/"], port=3008)
    await register(svc, web, "http://127.0.5.8:3008")
    before = await registry_state(svc.client)
    other = manifest("site", api=["/api/v1/site", "/"])
    resp = await svc.client.post(REGISTER, json=registration(other, "http://127.6.6.6:80"))
    assert resp.status_code == 409, resp.text
    assert resp.json()["errors"][0]["field"] == "manifest.exposes.api"
    assert await registry_state(svc.client) == before
    # A second instance of the same module is not a conflict.
    await register(svc, web, "http://127.0.5.9:3008")


async def test_expired_lease_is_removed_and_the_instance_can_dock_again(quark: QuarkTestEnv, tmp_path: Path) -> None:
    svc = await start_hub(quark, tmp_path, lease_ttl=0.5)
    iid = (await register(svc, manifest("blog"), "http://127.0.0.1:9"))["instance_id"]

    # Nobody renews: the lease lapses (discovery stops listing it at once), the monitor sweeps it.
    await eventually(lambda: _empty(svc), what="lease expiry")
    resp = await svc.client.put(hb("blog", iid))
    assert resp.status_code == 404 and resp.json()["type"].endswith("/unknown-instance")
    async with tap(quark) as events:
        undocked = await eventually(lambda: events.events(".undocked"))
        assert undocked[0].data["reason"] == "lease_expired"
        assert undocked[0].data["instance_url"] == "http://127.0.0.1:9"
        back = await register(svc, manifest("blog"), "http://127.0.0.1:9", instance_id=iid)
        assert back["instance_id"] == iid and back["docked"] is True
        docked = await eventually(lambda: _at_least(events, ".docked", 2))
        assert [e.data["instance_id"] for e in docked] == [iid, iid]


async def _empty(svc: Any) -> bool:
    return await registry_state(svc.client) == []


async def _at_least(events: Any, suffix: str, n: int) -> Any:
    got = await events.events(suffix)
    return got if len(got) >= n else None


async def test_registration_is_rate_limited_per_client(quark: QuarkTestEnv, tmp_path: Path) -> None:
    svc = await start_hub(quark, tmp_path, register_rate_limit=3, register_rate_window=60)
    for n in range(2):
        await register(svc, manifest(f"mod{n}", api=[f"/api/v1/m{n}"]), f"http://127.0.5.{n + 1}:80")
    bad = await svc.client.post(REGISTER, json={"manifest": {}})  # bad attempts count too
    assert bad.status_code == 422
    before = await registry_state(svc.client)
    limited = await svc.client.post(REGISTER, json=registration(manifest("late"), "http://127.0.5.9:80"))
    assert limited.status_code == 429
    assert limited.headers["content-type"] == "application/problem+json"
    assert 1 <= int(limited.headers["retry-after"]) <= 60
    assert await registry_state(svc.client) == before
    # Heartbeats of docked instances are not registrations: they keep working.
    iid = before[0]["instances"][0]["instance_id"]
    assert (await svc.client.put(hb(before[0]["name"], iid))).status_code == 200


async def test_registration_token_guards_registry_writes(quark: QuarkTestEnv, tmp_path: Path) -> None:
    token = "reg-token-0123456789abcdef"
    svc = await start_hub(quark, tmp_path, registration_token=token)
    body = registration(manifest("blog"), "http://127.0.5.1:3004")
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {token}"}):
        resp = await svc.client.post(REGISTER, json=body, headers=headers)
        assert resp.status_code == 401 and resp.headers["content-type"] == "application/problem+json"
    assert await registry_state(svc.client) == []
    ok = await svc.client.post(REGISTER, json=body, headers={"Authorization": f"Bearer {token}"})
    assert ok.status_code == 201
    iid = ok.json()["instance_id"]
    assert (await svc.client.put(hb("blog", iid))).status_code == 401
    assert (await svc.client.delete(inst("blog", iid))).status_code == 401
    assert (await svc.client.put(hb("blog", iid), headers={"Authorization": f"Bearer {token}"})).status_code == 200
    # Reading the registry stays open (discovery, Traefik config).
    assert len(await instances(svc.client, "blog")) == 1


async def test_hub_restart_keeps_the_registry_and_its_keys(quark: QuarkTestEnv, tmp_path: Path) -> None:
    from hub_testkit import fast

    settings = await quark.settings(hub_module, **fast(tmp_path))
    async with fake_instance() as blog:  # healthy throughout, so probes by either hub change nothing
        async with hub_app(quark, settings) as (_, client):
            resp = await client.post(REGISTER, json=registration(manifest("blog"), blog.url))
            iid = resp.json()["instance_id"]
            before = await registry_state(client)
            kid = (await client.get("/api/v1/hub/.well-known/jwks.json")).json()["keys"][0]["kid"]
        # A new hub process: same Redis namespace, same database, same secret store.
        again = settings.model_copy(deep=True)
        async with hub_app(quark, again) as (_, client):
            assert await registry_state(client) == before
            assert (await client.put(hb("blog", iid))).status_code == 200
            assert (await client.get("/api/v1/hub/.well-known/jwks.json")).json()["keys"][0]["kid"] == kid


async def test_oversized_registration_is_refused(quark: QuarkTestEnv, tmp_path: Path) -> None:
    svc = await start_hub(quark, tmp_path, max_register_body=4096)
    body = registration(manifest("blog"), "http://127.0.5.1:3004")
    big = copy.deepcopy(body)
    big["manifest"]["description"] = "x" * 10_000
    resp = await svc.client.post(REGISTER, json=big)
    assert resp.status_code == 413 and resp.headers["content-type"] == "application/problem+json"
    assert await registry_state(svc.client) == []


async def test_snapshots_validate_a_manifest_once_and_see_a_new_version(quark: QuarkTestEnv, tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from quark_hub import registry_store
    from quark_hub.runtime import HubRuntime

    svc = await start_hub(quark, tmp_path)
    store = svc.ctx.runtime.store
    assert isinstance(svc.ctx.runtime, HubRuntime)
    await register(svc, manifest("blog", version="1.0.0"), "http://127.0.0.1:3004")
    validated: list[str] = []
    real = registry_store.Manifest.model_validate

    def counting(data: Any, *args: Any, **kwargs: Any) -> Any:
        validated.append(data["name"])
        return real(data, *args, **kwargs)

    monkeypatch.setattr(registry_store.Manifest, "model_validate", counting)
    first = await store.snapshot()
    second = await store.snapshot()
    assert [m.manifest.version for m in first.modules] == [m.manifest.version for m in second.modules] == ["1.0.0"]
    assert validated.count("blog") <= 1  # at most once (none if an earlier read cached it)
    await register(svc, manifest("blog", version="1.1.0"), "http://127.0.0.1:3005")
    third = await store.snapshot()
    assert [m.manifest.version for m in third.modules] == ["1.1.0"]
    assert validated.count("blog") <= 2
