"""Only accounts in good standing write to ai, media and user (#16 items 2 and 10).

A deleted or suspended account's access token stays valid for reads until it expires (15 minutes),
but from the moment the auth module records the deletion or suspension in the revocation list, no
write of that token is accepted (`WritingUser`: 401 "token revoked"). Unverified accounts read but do
not write under the default policy (403). Each test first shows that the same write succeeds with
the same token while the account stands, so a refusal is the revocation's doing.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import redis.asyncio as aioredis
from security_testkit import Running, assert_problem, spec, start

from quark_sdk.auth import UNVERIFIED_WRITER
from quark_sdk.revocation import revoke_subject
from quark_sdk.testing import QuarkTestEnv

Write = Callable[[dict[str, str]], Awaitable[httpx.Response]]


def png() -> bytes:
    import io

    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (8, 8), (30, 200, 30)).save(out, "PNG")
    return out.getvalue()


def bearer(svc: Running, uid: str, *, roles: tuple[str, ...] = ("user",), verified: bool = True) -> dict[str, str]:
    # Issued a few seconds ago: a revocation recorded now covers it.
    token = svc.quark.user_token(uid, username="w" + uid[:8], roles=roles, verified=verified,
                                 issued_at=int(time.time()) - 5)
    return {"Authorization": f"Bearer {token}"}


async def revoke(quark: QuarkTestEnv, uid: str) -> None:
    """What the auth module does when an account is deleted or suspended."""
    redis = aioredis.from_url(quark.servers.redis_url)
    try:
        await revoke_subject(redis, uid, namespace=quark.namespace)
    finally:
        await redis.aclose()


async def check_writes(quark: QuarkTestEnv, uid: str, headers: dict[str, str], writes: dict[str, Write],
                       unverified: dict[str, str]) -> None:
    for name, write in writes.items():
        resp = await write(headers)
        assert resp.status_code < 300, (name, resp.status_code, resp.text)
    for name, write in writes.items():
        body = assert_problem(await write(unverified), 403)
        assert body["detail"] == UNVERIFIED_WRITER, name
    await revoke(quark, uid)
    for name, write in writes.items():
        body = assert_problem(await write(headers), 401)
        assert body["detail"] == "token revoked", name


async def test_ai_refuses_writes_of_revoked_and_unverified_accounts(quark: QuarkTestEnv, tmp_path: Path) -> None:
    svc = await start(quark, spec("ai"), tmp_path)
    c, uid = svc.client, str(uuid.uuid4())
    headers = bearer(svc, uid)
    unverified = bearer(svc, str(uuid.uuid4()), verified=False)
    drafts: list[str] = []

    async def create(h: dict[str, str]) -> httpx.Response:
        resp = await c.post("/api/v1/ai/drafts", json={"topic": "tomatoes in the garden"}, headers=h)
        if resp.status_code == 201:
            drafts.append(resp.json()["id"])
        return resp

    async def assist(h: dict[str, str]) -> httpx.Response:
        return await c.post("/api/v1/ai/assist", json={"text": "Tomatoes need sun."}, headers=h)

    async def edit(h: dict[str, str]) -> httpx.Response:
        return await c.patch(f"/api/v1/ai/drafts/{drafts[0]}", json={"title": "Edited"}, headers=h)

    async def reject(h: dict[str, str]) -> httpx.Response:
        return await c.post(f"/api/v1/ai/drafts/{drafts[-1]}/reject", headers=h)

    async def approve(h: dict[str, str]) -> httpx.Response:
        return await c.post(f"/api/v1/ai/drafts/{drafts[0]}/approve", json={}, headers=h)

    await check_writes(quark, uid, headers, {"create": create, "assist": assist, "edit": edit}, unverified)
    for write in (reject, approve):  # once each: the draft is decided after
        assert_problem(await write(headers), 401)
    # An unverified account still reads.
    assert (await c.get("/api/v1/ai/drafts", headers=unverified)).status_code == 200


async def test_media_refuses_writes_of_revoked_and_unverified_accounts(quark: QuarkTestEnv, tmp_path: Path) -> None:
    svc = await start(quark, spec("media"), tmp_path)
    c, uid = svc.client, str(uuid.uuid4())
    headers = bearer(svc, uid)
    unverified = bearer(svc, str(uuid.uuid4()), verified=False)
    made: list[str] = []

    async def upload(h: dict[str, str]) -> httpx.Response:
        resp = await c.post("/api/v1/media", files={"file": ("p.png", png(), "image/png")}, headers=h)
        if resp.status_code == 201:
            made.append(resp.json()["id"])
        return resp

    async def attach(h: dict[str, str]) -> httpx.Response:
        return await c.post(f"/api/v1/media/{made[0]}/attach", headers=h)

    await check_writes(quark, uid, headers, {"upload": upload, "attach": attach}, unverified)
    assert_problem(await c.delete(f"/api/v1/media/{made[0]}", headers=headers), 401)
    # A module's service token still attaches (the blog attaching a post's media).
    module = {"Authorization": f"Bearer {quark.service_token('blog', ('media:attach',))}"}
    assert (await c.post(f"/api/v1/media/{made[0]}/attach", headers=module)).status_code == 200


async def test_user_refuses_writes_of_revoked_and_unverified_accounts(quark: QuarkTestEnv, tmp_path: Path) -> None:
    svc = await start(quark, spec("user"), tmp_path)
    c = svc.client
    me, other, third = await svc.user(), await svc.user(), await svc.user()
    headers = bearer(svc, me.id)
    unverified = bearer(svc, me.id, verified=False)

    async def patch_me(h: dict[str, str]) -> httpx.Response:
        return await c.patch("/api/v1/users/me", json={"bio": f"bio {uuid.uuid4().hex[:6]}"}, headers=h)

    def toggle(method: str, path: str) -> Write:
        async def write(h: dict[str, str]) -> httpx.Response:
            return await c.request(method, path, headers=h)

        return write

    writes: dict[str, Any] = {
        "patch me": patch_me,
        "follow": toggle("POST", f"/api/v1/users/{other.username}/follow"),
        "mute": toggle("POST", f"/api/v1/users/{other.username}/mute"),
        "block": toggle("POST", f"/api/v1/users/{third.username}/block"),
    }
    await check_writes(quark, me.id, headers, writes, unverified)
    for method, path in (("DELETE", f"/api/v1/users/{other.username}/follow"),
                         ("DELETE", f"/api/v1/users/{other.username}/mute"),
                         ("DELETE", f"/api/v1/users/{third.username}/block")):
        assert_problem(await c.request(method, path, headers=headers), 401)
    # An admin whose own account was suspended or deleted no longer acts as one.
    admin = await svc.user(roles=("admin",))
    admin_headers = bearer(svc, admin.id, roles=("admin",))
    await revoke(quark, admin.id)
    assert_problem(await c.post(f"/api/v1/users/admin/users/{other.username}/suspend", json={},
                                headers=admin_headers), 401)
