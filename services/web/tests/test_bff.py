"""The backend-for-frontend: /api/v1/web/me and /api/v1/web/feed — parallel fan-out, degraded parts,
short caching of what every viewer sees alike."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from webkit import Station, sign_up, start_station, wait_profile

from quark_sdk.testing import QuarkTestEnv, assert_problem, eventually


async def publish(station: Station, token: str, title: str, **extra: Any) -> dict[str, Any]:
    api = station.api()
    resp = await api.post("/api/v1/posts", json={"title": title, "body": f"About {title}", "publish": True, **extra},
                          headers={"Authorization": f"Bearer {token}"})
    assert resp.status_code == 201, resp.text
    return dict(resp.json())


async def token_of(station: Station, b: Any) -> str:
    sess = await station.web.sessions.load(str(b.http.cookies.get("quark_session")))
    assert sess is not None
    return str(sess.access_token)


async def test_me_joins_account_and_profile_with_cookie_or_bearer(station: Station) -> None:
    b = station.browser()
    user_id = await sign_up(station, b, "alice", verify=False)
    await wait_profile(station, "alice")

    async def full() -> dict[str, Any] | None:
        body = (await b.http.get("/api/v1/web/me")).json()
        return body if body["profile"] else None

    body = await eventually(full, what="profile in /me")
    assert body["account"]["id"] == user_id and body["account"]["username"] == "alice"
    assert body["profile"]["username"] == "alice" and body["profile"]["display_name"] == "Alice"
    # No messaging module in this station: unread counts are absent, nothing breaks.
    assert body["unread"] is None
    token = await token_of(station, b)
    api = station.api()
    by_bearer = await api.get("/api/v1/web/me", headers={"Authorization": f"Bearer {token}"})
    assert by_bearer.status_code == 200 and by_bearer.json()["account"]["id"] == user_id
    assert by_bearer.headers["cache-control"] == "private, no-store"
    assert_problem(await api.get("/api/v1/web/me"), 401)
    assert_problem(await api.get("/api/v1/web/me", headers={"Authorization": "Basic x"}), 401)
    assert_problem(await api.get("/api/v1/web/me", headers={"Authorization": "Bearer not-a-token"}), 401)


async def test_feed_resolves_authors_and_media_and_caches_public_profiles(station: Station) -> None:
    b = station.browser()
    await sign_up(station, b, "bob", verify=False)
    await wait_profile(station, "bob")
    token = await token_of(station, b)
    for i in range(3):
        await publish(station, token, f"Post {i}", tags=["quark"])
    api = station.api()
    page1 = await api.get("/api/v1/web/feed", params={"source": "public", "limit": 2})
    assert page1.status_code == 200, page1.text
    body = page1.json()
    assert [i["post"]["title"] for i in body["items"]] == ["Post 2", "Post 1"]
    assert body["items"][0]["author"] == {"username": "bob", "display_name": "Bob", "avatar": None}
    assert body["degraded"] == [] and body["next_cursor"]
    page2 = (await api.get("/api/v1/web/feed", params={"source": "public", "limit": 2,
                                                         "cursor": body["next_cursor"]})).json()
    assert [i["post"]["title"] for i in page2["items"]] == ["Post 0"] and page2["next_cursor"] is None
    # The profile (anonymous view) is cached in Valkey for the next requests.
    key = station.web.ctx.key("cache", "profile:bob")
    assert await station.web.redis.exists(key)
    # A page's authors and images are read from the cache (one MGET): what it holds is what the feed shows,
    # and a miss is fetched again (and cached again).
    await station.web.redis.set(key, json.dumps({"display_name": "Cached Bob"}), px=60_000)
    cached = (await api.get("/api/v1/web/feed", params={"source": "public", "limit": 2})).json()
    assert [i["author"]["display_name"] for i in cached["items"]] == ["Cached Bob", "Cached Bob"]
    await station.web.redis.delete(key)
    fetched = (await api.get("/api/v1/web/feed", params={"source": "public", "limit": 2})).json()
    assert [i["author"]["display_name"] for i in fetched["items"]] == ["Bob", "Bob"]
    assert await station.web.redis.exists(key)
    tag = (await api.get("/api/v1/web/feed", params={"source": "tag", "tag": "quark"})).json()
    assert len(tag["items"]) == 3
    by_user = (await api.get("/api/v1/web/feed", params={"source": "user", "username": "bob"})).json()
    assert len(by_user["items"]) == 3
    home = await b.http.get("/api/v1/web/feed")  # the session's home timeline
    assert home.status_code == 200 and len(home.json()["items"]) == 3
    assert_problem(await api.get("/api/v1/web/feed"), 401)
    assert_problem(await api.get("/api/v1/web/feed", params={"source": "tag"}), 422)
    assert_problem(await api.get("/api/v1/web/feed", params={"source": "nope"}), 422)
    assert_problem(await api.get("/api/v1/web/feed", params={"source": "public", "cursor": "garbage"}), 422)


async def test_feed_with_media_down_still_answers_and_names_it(quark: QuarkTestEnv, tmp_path: Path) -> None:
    station = await start_station(quark, tmp_path, with_media=False)
    try:
        b = station.browser()
        await sign_up(station, b, "carol", verify=False)
        await wait_profile(station, "carol")
        token = await token_of(station, b)
        await publish(station, token, "With a picture", media_ids=["abc123"])
        body = (await station.api().get("/api/v1/web/feed", params={"source": "public"})).json()
        assert body["degraded"] == ["media"]
        assert body["items"][0]["post"]["title"] == "With a picture"
        assert body["items"][0]["media"] == [{"id": "abc123", "status": None, "width": None, "height": None,
                                              "variants": {}}]
        # The page shows the post and a degraded note rather than failing.
        page = await b.get("/explore")
        assert page.status_code == 200 and "With a picture" in page.text
        assert "not available right now" in page.text
    finally:
        await station.close()


async def test_bff_is_in_the_modules_openapi(station: Station) -> None:
    spec = station.modules["web"].app.openapi()
    assert {"/api/v1/web/me", "/api/v1/web/feed"} <= set(spec["paths"])
    assert not any(p.startswith(("/login", "/@")) for p in spec["paths"])  # pages are not API
