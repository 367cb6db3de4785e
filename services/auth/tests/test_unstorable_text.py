"""Text PostgreSQL cannot store (NUL characters) is a 422 problem, never a 500 (found by tests/security fuzzing)."""

from __future__ import annotations

from auth_testkit import API, PASSWORD, Auth, assert_problem
from sqlalchemy import text


async def test_nul_characters_are_refused_everywhere(auth: Auth) -> None:
    _, headers = await auth.user("alice")
    before = await auth.sql("SELECT count(*) FROM users")
    for path, body in (
        ("/login", {"login": "ali\x00ce", "password": PASSWORD}),
        ("/login", {"login": "alice@example.com\x00", "password": PASSWORD}),
        ("/register", {"username": "bob", "email": "bob@example.com", "password": PASSWORD,
                       "display_name": "B\x00b"}),
        ("/register", {"username": "bob", "email": "bob\x00@example.com", "password": PASSWORD}),
        ("/password-reset/request", {"email": "alice@example.com\x00"}),
        ("/password-reset/confirm", {"token": "x" * 20 + "\x00", "new_password": PASSWORD + "!"}),
        ("/verify-email/confirm", {"token": "x" * 20 + "\x00"}),
        ("/refresh", {"refresh_token": "x" * 20 + "\x00"}),
    ):
        resp = await auth.client.post(f"{API}{path}", json=body)
        assert_problem(resp, 422)
    assert await auth.sql("SELECT count(*) FROM users") == before
    assert (await auth.client.get(f"{API}/me", headers=headers)).status_code == 200


async def test_nul_in_the_admin_search_is_a_422(auth: Auth) -> None:
    await auth.register("root")
    async with auth.svc.ctx.database().session() as session, session.begin():
        await session.execute(text("INSERT INTO user_roles (user_id, role) "
                                   "SELECT id, 'admin' FROM users WHERE username = 'root'"))
    headers = {"Authorization": f"Bearer {(await auth.login('root'))['access_token']}"}
    assert_problem(await auth.client.get(f"{API}/admin/users", params={"q": "ro\x00"}, headers=headers), 422)
    assert (await auth.client.get(f"{API}/admin/users", params={"q": "ro"}, headers=headers)).status_code == 200
