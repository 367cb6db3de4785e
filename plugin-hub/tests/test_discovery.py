"""Discovery: what is docked, filtered by name, capability and health, paged by name."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hub_testkit import fake_instance, manifest, register, start_hub

from quark_sdk.testing import QuarkTestEnv, RunningModule, eventually


async def names(svc: RunningModule, path: str = "/api/v1/hub/services", **params: Any) -> list[str]:
    resp = await svc.client.get(path, params=params)
    assert resp.status_code == 200, resp.text
    return [m["name"] for m in resp.json()["items"]]


async def dock_station(svc: RunningModule) -> None:
    await register(svc, manifest("blog", api=["/api/v1/posts", "/api/v1/feed"],
                                 events=["quark.post.published", "quark.comment.created"],
                                 consumes=["quark.user.>"], scopes=["posts:read"],
                                 requires={"database": True, "event_bus": True, "cache": True}),
                   "http://127.0.5.4:3004")
    await register(svc, manifest("media", api=["/api/v1/media"], events=["quark.media.uploaded"],
                                 requires={"database": True, "storage": True}), "http://127.0.5.3:3003")
    await register(svc, manifest("messaging", api=["/api/v1/messages", "/api/v1/chats"],
                                 events=["quark.message.*"], consumes=["quark.post.published"],
                                 requires={"event_bus": True}), "http://127.0.5.5:3005")


async def test_filters_by_name_and_capability(quark: QuarkTestEnv, tmp_path: Path) -> None:
    svc = await start_hub(quark, tmp_path)
    await dock_station(svc)
    assert await names(svc) == ["blog", "media", "messaging"]
    assert await names(svc, "/modules/discovery") == ["blog", "media", "messaging"]
    assert await names(svc, name="media") == ["media"]
    assert await names(svc, name="nope") == []
    cases = {
        "event_bus": ["blog", "messaging"],
        "storage": ["media"],
        "cache": ["blog"],
        "quark.post.published": ["blog"],
        "quark.message.sent": ["messaging"],  # a wildcard in the manifest
        "quark.message.sent.twice": [],
        "/api/v1/posts/123/comments": ["blog"],
        "/api/v1/chats": ["messaging"],
        "/api/v1/postsx": [],
        "consumes:quark.user.followed": ["blog"],
        "consumes:quark.post.published": ["messaging"],
        "scope:posts:read": ["blog"],
    }
    for capability, expected in cases.items():
        assert await names(svc, capability=capability) == expected, capability
    both = await svc.client.get("/api/v1/hub/services", params=[("capability", "event_bus"),
                                                                ("capability", "quark.post.published")])
    assert [m["name"] for m in both.json()["items"]] == ["blog"]


async def test_module_detail_and_paging(quark: QuarkTestEnv, tmp_path: Path) -> None:
    svc = await start_hub(quark, tmp_path)
    await dock_station(svc)
    detail = await svc.client.get("/api/v1/hub/services/blog")
    assert detail.status_code == 200
    blog = detail.json()
    assert blog["publishes"] == ["quark.post.published", "quark.comment.created"]
    assert blog["consumes"] == ["quark.user.>"] and blog["requires"]["cache"] is True
    for missing in ("nope", "NOT-A-NAME", "x" * 300):
        resp = await svc.client.get(f"/api/v1/hub/services/{missing}")
        assert resp.status_code == 404 and resp.headers["content-type"] == "application/problem+json"
    first = (await svc.client.get("/api/v1/hub/services", params={"limit": 2})).json()
    assert [m["name"] for m in first["items"]] == ["blog", "media"] and first["next_cursor"] == "media"
    rest = (await svc.client.get("/api/v1/hub/services", params={"limit": 2, "cursor": "media"})).json()
    assert [m["name"] for m in rest["items"]] == ["messaging"] and rest["next_cursor"] is None


async def test_bad_filters_are_422(quark: QuarkTestEnv, tmp_path: Path) -> None:
    svc = await start_hub(quark, tmp_path)
    await dock_station(svc)
    for params, field in (({"capability": "teleportation"}, "capability"), ({"health": "sparkling"}, "health"),
                          ({"limit": 0}, "limit"), ({"limit": "many"}, "limit"), ({"name": "x" * 100}, "name")):
        resp = await svc.client.get("/api/v1/hub/services", params=params)
        assert resp.status_code == 422, (params, resp.text)
        assert resp.json()["errors"][0]["field"] == field


async def test_filter_by_health(quark: QuarkTestEnv, tmp_path: Path) -> None:
    svc = await start_hub(quark, tmp_path)
    async with fake_instance() as good, fake_instance() as bad:
        bad.status = 503
        await register(svc, manifest("blog"), good.url)
        await register(svc, manifest("blog"), bad.url)
        await register(svc, manifest("media"), "http://127.0.0.1:9")  # nothing listens there

        async def states() -> dict[str, str]:
            page = (await svc.client.get("/api/v1/hub/services")).json()
            return {i["instance_url"]: i["health"] for m in page["items"] for i in m["instances"]}

        await eventually(lambda: _all_settled(states), what="probes settle")
        healthy = (await svc.client.get("/api/v1/hub/services", params={"health": "healthy"})).json()["items"]
        assert [(m["name"], [i["instance_url"] for i in m["instances"]]) for m in healthy] == [("blog", [good.url])]
        unhealthy = (await svc.client.get("/api/v1/hub/services", params={"health": "unhealthy"})).json()["items"]
        assert [m["name"] for m in unhealthy] == ["blog", "media"]
        assert unhealthy[0]["health"] == "degraded"  # the module: one instance can still take traffic
        assert unhealthy[1]["health"] == "unhealthy"
        assert await names(svc, health="degraded") == []


async def _all_settled(states: Any) -> bool:
    got = await states()
    return sorted(got.values()) == ["healthy", "unhealthy", "unhealthy"]
