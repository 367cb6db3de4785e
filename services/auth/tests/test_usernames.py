"""Reserved usernames (fixed route segments of the user and blog services, system names) are refused at
registration and by `quark create-admin`, with a 422 naming the field, and nothing is written."""

from __future__ import annotations

import pytest
from auth_testkit import API, PASSWORD, Auth, assert_problem

from quark_auth.accounts import create_admin
from quark_auth.reserved import RESERVED_USERNAMES, is_reserved
from quark_sdk.errors import InvalidInput


def test_the_list_covers_the_user_and_blog_routes() -> None:
    for name in ("search", "me", "admin", "by", "tags", "categories", "moderation", "mine", "api", "well-known",
                 "feed", "home", "public"):
        assert name in RESERVED_USERNAMES
    for variant in ("SEARCH", "Well_Known", "well.known", "wellknown", "a.dmin", "Moderation", "-api-"):
        assert is_reserved(variant), variant
    for fine in ("root", "alice", "admins", "searchy", "mine2", "bylaw"):
        assert not is_reserved(fine), fine


@pytest.mark.parametrize("username", ["search", "Admin", "well-known", "tags", "mine", "api", "categories"])
async def test_register_refuses_reserved_names(auth: Auth, username: str) -> None:
    resp = await auth.client.post(f"{API}/register", json={"username": username, "email": "x@example.com",
                                                           "password": PASSWORD})
    body = assert_problem(resp, 422)
    assert body["type"].endswith("/username-reserved") and "reserved" in body["detail"]
    assert body["errors"] == [{"field": "username", "message": body["detail"]}]
    assert await auth.sql("SELECT id FROM users") == [] and await auth.outbox_types() == []


async def test_create_admin_refuses_reserved_names(auth: Auth) -> None:
    async with auth.svc.ctx.database().session() as session:
        with pytest.raises(InvalidInput, match="reserved") as info:
            await create_admin(session, auth.rt, username="admin", email="admin@example.com",
                                       password=PASSWORD)
    assert info.value.extra["errors"][0]["field"] == "username"
    assert await auth.sql("SELECT id FROM users") == []
    async with auth.svc.ctx.database().session() as session:
        await create_admin(session, auth.rt, username="root", email="root@example.com", password=PASSWORD)
    assert len(await auth.sql("SELECT id FROM users")) == 1
