"""User search: case-insensitive prefix on username or display name, served by indexes."""

from sqlalchemy import text
from sqlalchemy.dialects import postgresql
from user_testkit import Account, UserHarness, assert_problem, start

from quark_sdk.testing import QuarkTestEnv
from quark_user import directory


async def names(h: UserHarness, q: str, who: Account | None = None, **params: object) -> list[str]:
    resp = await h.get("/search", who, params={"q": q, **params})
    assert resp.status_code == 200, resp.text
    return [i["username"] for i in resp.json()["items"]]


async def test_prefix_search_on_username_and_display_name(quark: QuarkTestEnv) -> None:
    h = await start(quark)
    await h.register("alice", display_name="Alice Liddell")
    await h.register("Alfred")
    await h.register("bob", display_name="Alan Bobson")
    await h.register("al_x")
    await h.register("zed", display_name="Zed")
    await h.register("malcolm")  # contains "al" but does not start with it

    # Ordered by lowercased username, bytewise (so the order does not depend on the server's collation).
    assert await names(h, "al") == ["al_x", "Alfred", "alice", "bob"]
    assert await names(h, "AL") == await names(h, "al")
    assert await names(h, "@ali") == ["alice"]
    assert await names(h, "alan b") == ["bob"]
    assert await names(h, "al_") == ["al_x"]  # "_" is a literal, not a wildcard
    assert await names(h, "%") == []
    assert await names(h, "a%") == []
    assert await names(h, "zz") == []

    walked = []
    cursor = None
    while True:
        params = {"limit": 1, **({"cursor": cursor} if cursor else {})}
        body = (await h.get("/search", params={"q": "al", **params})).json()
        walked += [i["username"] for i in body["items"]]
        cursor = body["next_cursor"]
        if not cursor:
            break
    assert walked == await names(h, "al") and len(walked) == 4
    assert_problem(await h.get("/search", params={"q": ""}), 422)
    assert_problem(await h.get("/search", params={"q": "   "}), 422)
    assert_problem(await h.get("/search", params={"q": "x" * 65}), 422)
    assert_problem(await h.get("/search"), 422)
    assert_problem(await h.get("/search", params={"q": "al", "cursor": "bogus"}), 422)


async def test_search_hides_suspended_accounts_and_those_blocking_the_caller(quark: QuarkTestEnv) -> None:
    h = await start(quark)
    alice, bob, _ = await h.accounts("alice", "albert", "alvin")
    admin = await h.register("root", roles=("admin",))
    await h.post("/alice/block", bob)  # albert blocks alice
    assert await names(h, "al", alice) == ["alice", "alvin"]
    assert await names(h, "al") == ["albert", "alice", "alvin"]
    await h.post("/admin/users/alvin/suspend", admin, json={"reason": "spam"})
    assert await names(h, "al") == ["albert", "alice"]


async def test_search_uses_the_prefix_indexes(quark: QuarkTestEnv) -> None:
    h = await start(quark)
    await h.register("alice")
    stmt = directory.search_statement("al", viewer_id=None, after=None, limit=20)
    sql = str(stmt.compile(dialect=postgresql.dialect(), compile_kwargs={"literal_binds": True}))
    async with h.svc.ctx.database().transaction() as session:
        await session.execute(text("SET LOCAL enable_seqscan = off"))
        plan = "\n".join((await session.scalars(text("EXPLAIN " + sql))).all())
    assert "uq_profiles_username_lower" in plan, plan
    assert "ix_profiles_display_name_prefix" in plan, plan
