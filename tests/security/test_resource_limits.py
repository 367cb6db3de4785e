"""Unrestricted resource consumption (OWASP API4): body caps, page caps, rate limits and their bypasses."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from security_testkit import PASSWORD, ServiceSpec, assert_problem, service_params, spec, start

from quark_sdk.testing import QuarkTestEnv, eventually

BIG = 5 * 1024 * 1024

# service -> (method, path) of a write that takes a JSON body. One line per service. (media takes multipart
# uploads; its size caps are tested with the hostile-upload corpus in its own suite.)
WRITES: dict[str, tuple[str, str]] = {
    "hub": ("POST", "/api/v1/hub/modules/register"),
    "auth": ("POST", "/api/v1/auth/register"),
    "user": ("PATCH", "/api/v1/users/me"),
    "blog": ("POST", "/api/v1/posts"),
    "messaging": ("POST", "/api/v1/chats"),
    "ai": ("POST", "/api/v1/ai/drafts"),
}
NO_BODY_CAP = ("no request-body cap: the whole body is read and parsed before a 422; needs the SDK-wide "
               "body limit requested in the report (blog and ai cap theirs in their own route class)")
# service -> what is known not to hold yet: {"declared": reason, "streamed": reason}
BODY_CAP_GAPS: dict[str, dict[str, str]] = {
}
STILL_BUILT = {"messaging", "media", "ai"}


def body_cases() -> list[Any]:
    out = []
    for param in service_params():
        svc_spec: ServiceSpec = param.values[0]
        if svc_spec.name not in WRITES:
            continue
        for how in ("declared", "streamed"):
            marks = list(param.marks)
            gap = BODY_CAP_GAPS.get(svc_spec.name, {}).get(how)
            if gap:
                marks.append(pytest.mark.xfail(reason=gap, strict=svc_spec.name not in STILL_BUILT))
            out.append(pytest.param(svc_spec, how, id=f"{svc_spec.name}-{how}", marks=marks))
    return out


@pytest.mark.parametrize(("svc_spec", "how"), body_cases())
async def test_oversized_bodies_are_413(svc_spec: ServiceSpec, how: str, quark: QuarkTestEnv,
                                        tmp_path: Path) -> None:
    svc = await start(quark, svc_spec, tmp_path)
    user = await svc.user()
    method, path = WRITES[svc_spec.name]
    headers = {**user.headers, "content-type": "application/json"}
    if how == "declared":
        content: Any = b'{"title": "' + b"x" * BIG + b'"}'
    else:  # chunked, no Content-Length: the cap must apply while streaming

        async def chunks() -> AsyncIterator[bytes]:
            for _ in range(BIG // 65536):
                yield b"x" * 65536

        content = chunks()
    resp = await svc.client.request(method, path, content=content, headers=headers)
    assert_problem(resp, 413)


@pytest.mark.parametrize("svc_spec", service_params())
async def test_every_page_size_is_capped(svc_spec: ServiceSpec, quark: QuarkTestEnv, tmp_path: Path) -> None:
    """Every list operation of the OpenAPI has a bounded `limit`; asking for more is a 422, never a huge page."""
    svc = await start(quark, svc_spec, tmp_path)
    user = await svc.user(roles=("user", "admin", "operator"))  # operator: the hub's operator lists too
    lists = 0
    for path, item in svc.svc.app.openapi()["paths"].items():
        op = item.get("get")
        if op is None or "{" in path:
            continue
        limit = next((p for p in op.get("parameters", []) if p["name"] in ("limit", "page_size", "per_page")), None)
        if limit is None:
            continue
        lists += 1
        schema = limit.get("schema", {})
        maximum = schema.get("maximum", next((s.get("maximum") for s in schema.get("anyOf", []) if "maximum" in s),
                                             None))
        assert isinstance(maximum, int) and maximum <= 1000, f"{path}: limit has no sane maximum: {schema}"
        for too_many in (maximum + 1, 10**9, -1):
            resp = await svc.client.get(path, params={limit["name"]: too_many}, headers=user.headers)
            assert_problem(resp, 422)
        ok = await svc.client.get(path, params={limit["name"]: maximum}, headers=user.headers)
        assert ok.status_code < 500, ok.text
        if ok.status_code == 200 and isinstance(ok.json(), dict) and "items" in ok.json():
            assert len(ok.json()["items"]) <= maximum
    assert lists > 0


async def test_blog_write_limit_429_retry_after_no_bypass_and_reset(quark: QuarkTestEnv, tmp_path: Path) -> None:
    svc = await start(quark, spec("blog"), tmp_path, write_rate_limit=3, write_rate_window=1.0)
    user = await svc.user()

    async def write(path: str = "/api/v1/posts", **headers: str) -> Any:
        return await svc.client.post(path, json={"title": "t", "body": "b"}, headers={**user.headers, **headers})

    for _ in range(3):
        assert (await write()).status_code == 201
    limited = await write()
    assert_problem(limited, 429)
    assert int(limited.headers["retry-after"]) >= 1
    # Bypass attempts: a spoofed client address, a trailing slash, another case.
    assert_problem(await write(**{"X-Forwarded-For": "203.0.113.7", "X-Real-IP": "203.0.113.8"}), 429)
    assert (await write("/api/v1/posts/")).status_code in (307, 404, 405, 429)  # a redirect creates nothing
    assert (await write("/API/V1/POSTS")).status_code in (404, 405)
    created = (await svc.client.get("/api/v1/posts/mine", headers=user.headers)).json()["items"]
    assert len(created) == 3
    # The window passes: writing works again (polled, not slept).
    await eventually(lambda: _created(write), timeout=10, what="rate limit window reset")


async def _created(write: Any) -> bool:
    return bool((await write()).status_code == 201)


async def test_login_ip_limit_ignores_spoofed_forwarded_for(quark: QuarkTestEnv, tmp_path: Path) -> None:
    svc = await start(quark, spec("auth"), tmp_path, login_ip_limit=4, login_ip_window=60.0,
                      trust_proxy_headers=False)
    rt = svc.svc.ctx.runtime
    start_at = 1_900_000_020.0
    now = [start_at]
    rt.set_clock(lambda: now[0])
    await svc.user("alice")  # its login is the first of 4 attempts allowed per window
    for i in range(3):
        resp = await svc.client.post("/api/v1/auth/login", json={"login": "alice", "password": "wrong password"},
                                     headers={"X-Forwarded-For": f"198.51.100.{i}"})
        assert resp.status_code == 401, resp.text
    for spoof in ("198.51.100.99", "127.0.0.1", "10.0.0.1, 198.51.100.5"):
        resp = await svc.client.post("/api/v1/auth/login", json={"login": "alice", "password": PASSWORD},
                                     headers={"X-Forwarded-For": spoof, "X-Real-IP": spoof})
        problem = assert_problem(resp, 429)
        assert int(resp.headers["retry-after"]) >= 1
        assert problem["type"].endswith("/rate-limited") or problem["status"] == 429
    for path in ("/api/v1/auth/login/", "/API/V1/AUTH/LOGIN", "/api/v1/auth//login"):
        resp = await svc.client.post(path, json={"login": "alice", "password": PASSWORD})
        assert resp.status_code in (307, 404, 405, 429), (path, resp.status_code)
        assert "access_token" not in resp.text
    now[0] += 121  # two windows later (sliding window)
    ok = await svc.client.post("/api/v1/auth/login", json={"login": "alice", "password": PASSWORD})
    assert ok.status_code == 200, ok.text


async def test_hub_registration_limit_is_per_peer_not_per_header(quark: QuarkTestEnv, tmp_path: Path) -> None:
    svc = await start(quark, spec("hub"), tmp_path, register_rate_limit=2, register_rate_window=60.0)
    statuses = []
    for i in range(4):
        resp = await svc.client.post("/api/v1/hub/modules/register", json={"manifest": {}, "instance_url": "x"},
                                     headers={"X-Forwarded-For": f"203.0.113.{i}"})
        statuses.append(resp.status_code)
    assert statuses[:2] == [422, 422] and statuses[2:] == [429, 429], statuses
    assert int(resp.headers["retry-after"]) >= 1

