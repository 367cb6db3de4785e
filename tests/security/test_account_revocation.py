"""Issue 16 item 2 (the auth side): a deleted or suspended account's still-valid access token stops working
in every other module, not 15 minutes later.

A real auth module issues the tokens; the user module — another module, verifying them from auth's JWKS
like any module does — is the one written to. Auth records the deletion / suspension in the station's
revocation list (quark_sdk.revocation); the other module refuses the token (401) as soon as it knows.
Everything runs over the real bus: the user module builds its profiles from auth's events, and the
suspension is decided in the user module and enforced by auth's consumer.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import httpx
import jwt
from sqlalchemy import text

from quark_auth.accounts import create_admin
from quark_auth.app import module as auth_module
from quark_sdk.auth import JWKSCache
from quark_sdk.events import CloudEvent
from quark_sdk.revocation import revocation_key
from quark_sdk.testing import QuarkTestEnv, RunningModule, eventually
from quark_user.app import module as user_module

AUTH = "/api/v1/auth"
USERS = "/api/v1/users"
PASSWORD = "correct horse battery"
FAST = {"bcrypt_rounds": 4, "login_ip_limit": 100_000, "register_ip_limit": 100_000,
        "email_request_ip_limit": 100_000}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


class Station:
    """A real auth module and the user module trusting its keys, in one test namespace."""

    def __init__(self, quark: QuarkTestEnv, auth: RunningModule, users: RunningModule) -> None:
        self.quark, self.auth, self.users = quark, auth, users

    @classmethod
    async def start(cls, quark: QuarkTestEnv, tmp_path: Path) -> Station:
        auth = await quark.start(auth_module, keep_verifier=True, data_dir=tmp_path / "auth", **FAST)
        # The user module keeps the verifier the app factory gave it (revocation list included) and
        # fetches auth's JWKS from the running auth module instead of the gateway.
        users = await quark.start(user_module, keep_verifier=True)
        verifier = users.ctx.verifier
        assert verifier is not None and verifier.revocations is not None
        verifier.sources["quark-auth"] = JWKSCache(f"http://test{AUTH}/.well-known/jwks.json", client=auth.client)
        return cls(quark, auth, users)

    async def account(self, username: str) -> tuple[str, dict[str, Any]]:
        """Register, verify the email as its owner would (the link's token), log in; the user module knows it."""
        resp = await self.auth.client.post(f"{AUTH}/register", json={
            "username": username, "email": f"{username}@example.com", "password": PASSWORD})
        assert resp.status_code == 201, resp.text
        user_id = resp.json()["id"]
        await self.verify_email(user_id)
        tokens = await self.login(username)
        assert tokens["user"]["email_verified"] is True
        await eventually(lambda: self._profile(tokens["access_token"]), what=f"{username}'s profile")
        return user_id, tokens

    async def verify_email(self, user_id: str) -> None:
        """Confirm with the token of the verification email (the outbox event the mailer sends)."""
        async with self.auth.ctx.database().session() as session:
            rows = (await session.execute(text("SELECT body FROM quark_outbox ORDER BY seq"))).all()
        tokens = [e.data["token"] for e in (CloudEvent.from_bytes(r.body.encode()) for r in rows)
                  if e.type == "quark.auth.email_requested" and e.data["user_id"] == user_id]
        resp = await self.auth.client.post(f"{AUTH}/verify-email/confirm", json={"token": tokens[-1]})
        assert resp.status_code == 204, resp.text

    async def login(self, username: str) -> dict[str, Any]:
        resp = await self.auth.client.post(f"{AUTH}/login", json={"login": username, "password": PASSWORD})
        assert resp.status_code == 200, resp.text
        body: dict[str, Any] = resp.json()
        return body

    async def admin(self) -> dict[str, str]:
        async with self.auth.ctx.database().session() as session:
            await create_admin(session, self.auth.ctx.runtime, username="root", email="root@example.com",
                               password=PASSWORD, force=True)
        token = (await self.login("root"))["access_token"]
        await eventually(lambda: self._profile(token), what="root's profile")
        return bearer(token)

    async def _profile(self, token: str) -> bool:
        return (await self.users.client.get(f"{USERS}/me", headers=bearer(token))).status_code == 200

    async def write(self, token: str) -> httpx.Response:
        """A write in the other module: the caller edits their profile."""
        return await self.users.client.patch(f"{USERS}/me", json={"bio": uuid.uuid4().hex}, headers=bearer(token))

    async def refused(self, token: str) -> None:
        async def is_401() -> bool:
            return (await self.write(token)).status_code == 401

        await eventually(is_401, what="the other module refusing the token")
        assert (await self.write(token)).json()["detail"] == "token revoked"

    async def revoked_at(self, user_id: str) -> float | None:
        redis = self.auth.ctx.cache()
        score = await redis.zscore(revocation_key(self.auth.settings.event_namespace), user_id)
        return None if score is None else float(score)

    async def is_revoked(self, user_id: str) -> bool:
        return await self.revoked_at(user_id) is not None

    async def is_lifted(self, user_id: str) -> bool:
        return await self.revoked_at(user_id) is None


async def test_deleted_account_token_is_refused_in_another_module(quark: QuarkTestEnv, tmp_path: Path) -> None:
    station = await Station.start(quark, tmp_path)
    user_id, tokens = await station.account("dora")
    token = tokens["access_token"]
    assert (await station.write(token)).status_code == 200

    resp = await station.auth.client.request("DELETE", f"{AUTH}/me", json={"password": PASSWORD},
                                             headers=bearer(token))
    assert resp.status_code == 204, resp.text
    # Recorded the moment the deletion is answered, not when the token expires.
    assert await station.revoked_at(user_id) is not None
    await station.refused(token)


async def test_suspended_account_token_is_refused_and_unsuspended_signs_in_again(quark: QuarkTestEnv,
                                                                                 tmp_path: Path) -> None:
    station = await Station.start(quark, tmp_path)
    admin = await station.admin()
    user_id, tokens = await station.account("sam")
    token = tokens["access_token"]
    assert (await station.write(token)).status_code == 200

    # Decided in the user module, enforced by auth's consumer of quark.user.suspended.
    resp = await station.users.client.post(f"{USERS}/admin/users/sam/suspend", json={"reason": "spam"},
                                           headers=admin)
    assert resp.status_code == 200, resp.text
    await eventually(lambda: station.is_revoked(user_id), what="auth revoking the suspended account")
    await station.refused(token)

    resp = await station.users.client.post(f"{USERS}/admin/users/sam/unsuspend", headers=admin)
    assert resp.status_code == 200, resp.text
    await eventually(lambda: station.is_lifted(user_id), what="auth lifting the revocation")

    # The revocation is lifted inside the consumer's transaction, a moment before the account's
    # suspension is: wait for the login to be let in.
    async def signs_in() -> bool:
        resp = await station.auth.client.post(f"{AUTH}/login", json={"login": "sam", "password": PASSWORD})
        return resp.status_code == 200

    await eventually(signs_in, what="the unsuspended account signing in")
    again = (await station.login("sam"))["access_token"]

    async def writes() -> bool:
        return (await station.write(again)).status_code == 200

    await eventually(writes, what="the unsuspended account writing again")


async def test_password_reset_refuses_the_old_tokens_and_the_new_password_writes_at_once(
        quark: QuarkTestEnv, tmp_path: Path) -> None:
    station = await Station.start(quark, tmp_path)
    user_id, tokens = await station.account("rita")
    stolen = tokens["access_token"]  # what an attacker holding the old password would keep using
    assert (await station.write(stolen)).status_code == 200
    # `iat` is whole seconds and the reset's cut lies just below its own second: the stolen token must be
    # from an earlier second for the test to say anything (it is, for a real attacker, but tests are fast).
    issued = jwt.decode(stolen, options={"verify_signature": False})["iat"]
    clock = station.auth.ctx.runtime.clock

    async def next_second() -> bool:
        return clock() >= issued + 1

    await eventually(next_second, interval=0.05, what="the clock past the stolen token's second")

    resp = await station.auth.client.post(f"{AUTH}/password-reset/request", json={"email": "rita@example.com"})
    assert resp.status_code in (202, 204), resp.text
    async with station.auth.ctx.database().session() as session:
        rows = (await session.execute(text("SELECT body FROM quark_outbox ORDER BY seq"))).all()
    links = [e.data["token"] for e in (CloudEvent.from_bytes(r.body.encode()) for r in rows)
             if e.type == "quark.auth.email_requested" and e.data["user_id"] == user_id
             and e.data["kind"] == "reset_password"]
    new_password = "a brand new passphrase"
    resp = await station.auth.client.post(f"{AUTH}/password-reset/confirm",
                                          json={"token": links[-1], "new_password": new_password})
    assert resp.status_code == 204, resp.text
    assert await station.revoked_at(user_id) is not None
    # The owner signs in with the new password right away (most often within the reset's second: iat is
    # whole seconds) and writes at once; the old token is refused.
    resp = await station.auth.client.post(f"{AUTH}/login", json={"login": "rita", "password": new_password})
    assert resp.status_code == 200, resp.text
    assert (await station.write(resp.json()["access_token"])).status_code == 200
    await station.refused(stolen)
