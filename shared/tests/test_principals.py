"""One user principal for every module: `UserPrincipal`/`UserId` (user tokens only), `AnyPrincipal`,
`WritingUser` (the account still stands, and is verified under the station's policy), and the
revocation list that stops the tokens of deleted and suspended accounts before they expire."""

from __future__ import annotations

import dataclasses
import time
import uuid

import redis.asyncio as aioredis
from fastapi import APIRouter

from quark_sdk.auth import USER_TOKEN_REQUIRED, AnyPrincipal, UserId, WritingUser
from quark_sdk.revocation import restore_subject, revoke_subject
from quark_sdk.testing import QuarkTestEnv, assert_problem, eventually
from sample.module import module as sample_module

router = APIRouter(prefix="/api/v1/who")


@router.get("/me")
async def me(user_id: UserId) -> dict[str, str]:
    return {"id": str(user_id)}


@router.get("/any")
async def anyone(principal: AnyPrincipal) -> dict[str, str]:
    return {"kind": principal.kind}


@router.post("/write", status_code=201)
async def write(writer: WritingUser, user_id: UserId) -> dict[str, str]:
    return {"id": str(user_id)}


module = dataclasses.replace(sample_module, routers=[router])


async def test_user_routes_take_user_tokens_only(quark: QuarkTestEnv) -> None:
    svc = await quark.start(module)
    uid = str(uuid.uuid4())
    user = quark.bearer(quark.user_token(uid))
    service = quark.bearer(quark.service_token("blog", ("read",)))
    assert (await svc.client.get("/api/v1/who/me", headers=user)).json() == {"id": uid}
    body = assert_problem(await svc.client.get("/api/v1/who/me", headers=service), 403)
    assert body["detail"] == USER_TOKEN_REQUIRED
    assert (await svc.client.get("/api/v1/who/any", headers=service)).json() == {"kind": "service"}
    assert_problem(await svc.client.get("/api/v1/who/me"), 401)
    not_a_uuid = quark.bearer(quark.user_token("alice"))
    assert_problem(await svc.client.get("/api/v1/who/me", headers=not_a_uuid), 401)


async def test_unverified_accounts_read_but_do_not_write_by_default(quark: QuarkTestEnv) -> None:
    svc = await quark.start(module)
    uid = str(uuid.uuid4())
    unverified = quark.bearer(quark.user_token(uid, verified=False))
    assert (await svc.client.get("/api/v1/who/me", headers=unverified)).status_code == 200
    body = assert_problem(await svc.client.post("/api/v1/who/write", headers=unverified), 403)
    assert "verify" in body["detail"]
    assert (await svc.client.post("/api/v1/who/write", headers=quark.bearer(quark.user_token(uid)))).status_code == 201

    relaxed = await quark.start(module, require_verified_to_write=False)
    assert (await relaxed.client.post("/api/v1/who/write", headers=unverified)).status_code == 201


async def test_a_revoked_account_stops_writing_at_once_and_reading_soon_after(quark: QuarkTestEnv) -> None:
    svc = await quark.start(module)
    other = await quark.start(module)  # a second module process in the same station
    uid, bystander = str(uuid.uuid4()), str(uuid.uuid4())
    token = quark.bearer(quark.user_token(uid, issued_at=int(time.time()) - 5))
    fine = quark.bearer(quark.user_token(bystander))
    assert (await svc.client.post("/api/v1/who/write", headers=token)).status_code == 201

    redis = aioredis.from_url(quark.servers.redis_url)
    try:
        await revoke_subject(redis, uid, namespace=quark.namespace)
        # Writes ask Valkey: refused the moment the revocation is recorded, in every module.
        for running in (svc, other):
            body = assert_problem(await running.client.post("/api/v1/who/write", headers=token), 401)
            assert body["detail"] == "token revoked"
        # Reads use the in-memory list, kept current by pub/sub.
        async def read_refused() -> bool:
            return (await other.client.get("/api/v1/who/me", headers=token)).status_code == 401

        await eventually(read_refused, what="the revocation reaches the module's memory")
        assert (await other.client.post("/api/v1/who/write", headers=fine)).status_code == 201
        # A token issued after the revocation (an unsuspended account logging in again) works.
        fresh = quark.bearer(quark.user_token(uid, issued_at=int(time.time()) + 2))
        assert (await svc.client.post("/api/v1/who/write", headers=fresh)).status_code == 201
        # Lifting it restores the old token too.
        await restore_subject(redis, uid, namespace=quark.namespace)
        assert (await svc.client.post("/api/v1/who/write", headers=token)).status_code == 201

        async def read_allowed() -> bool:
            return (await other.client.get("/api/v1/who/me", headers=token)).status_code == 200

        await eventually(read_allowed, what="the lifted revocation reaches the module's memory")
    finally:
        await redis.aclose()


async def test_a_module_started_after_the_revocation_loads_it(quark: QuarkTestEnv) -> None:
    uid = str(uuid.uuid4())
    token = quark.bearer(quark.user_token(uid, issued_at=int(time.time()) - 5))
    redis = aioredis.from_url(quark.servers.redis_url)
    try:
        await revoke_subject(redis, uid, namespace=quark.namespace)
    finally:
        await redis.aclose()
    svc = await quark.start(module)
    assert_problem(await svc.client.get("/api/v1/who/me", headers=token), 401)
