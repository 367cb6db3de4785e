"""Bad input gets a 4xx problem+json and changes nothing (every table and the outbox are compared)."""

from typing import Any

from user_testkit import UserHarness, start

from quark_sdk.pagination import encode_cursor
from quark_sdk.testing import QuarkTestEnv


async def world(quark: QuarkTestEnv) -> tuple[UserHarness, dict[str, Any]]:
    h = await start(quark, bio_max_length=50, links_max_count=2, link_max_length=40)
    alice, bob, carol = await h.accounts("alice", "bob", "carol")
    admin = await h.register("root", roles=("admin",))
    await h.post("/bob/follow", alice)
    await h.post("/carol/block", alice)
    await h.post("/carol/mute", alice)
    await h.post("/admin/users/carol/suspend", admin, json={"reason": "x"})
    return h, {"alice": alice, "bob": bob, "carol": carol, "root": admin}


CASES: list[tuple[str, str, str, str | None, Any, int]] = [
    # (what, method, path, who, json body, status)
    ("follow yourself", "POST", "/alice/follow", "alice", None, 422),
    ("follow twice", "POST", "/bob/follow", "alice", None, 409),
    ("follow unknown user", "POST", "/nobody/follow", "alice", None, 404),
    ("follow without a token", "POST", "/bob/follow", None, None, 401),
    ("follow a suspended user", "POST", "/carol/follow", "bob", None, 403),
    ("unfollow someone not followed", "DELETE", "/carol/follow", "bob", None, 404),
    ("unfollow unknown user", "DELETE", "/nobody/follow", "alice", None, 404),
    ("unfollow yourself", "DELETE", "/alice/follow", "alice", None, 422),
    ("block yourself", "POST", "/alice/block", "alice", None, 422),
    ("block twice", "POST", "/carol/block", "alice", None, 409),
    ("unblock someone not blocked", "DELETE", "/bob/block", "alice", None, 404),
    ("mute yourself", "POST", "/alice/mute", "alice", None, 422),
    ("mute twice", "POST", "/carol/mute", "alice", None, 409),
    ("unmute someone not muted", "DELETE", "/bob/mute", "alice", None, 404),
    ("approve a request that does not exist", "POST", "/me/follow-requests/bob/approve", "alice", None, 404),
    ("reject a request that does not exist", "POST", "/me/follow-requests/bob/reject", "alice", None, 404),
    ("remove a follower who is not one", "DELETE", "/me/followers/carol", "alice", None, 404),
    ("username too long", "GET", "/" + "x" * 65, None, None, 422),
    ("bio too long", "PATCH", "/me", "alice", {"bio": "x" * 51}, 422),
    ("bio with control characters", "PATCH", "/me", "alice", {"bio": "bell\x07"}, 422),
    ("bio not a string", "PATCH", "/me", "alice", {"bio": 42}, 422),
    ("display name too long", "PATCH", "/me", "alice", {"display_name": "x" * 101}, 422),
    ("display name blank", "PATCH", "/me", "alice", {"display_name": "   "}, 422),
    ("display name with a NUL", "PATCH", "/me", "alice", {"display_name": "a\x00b"}, 422),
    ("link with ftp scheme", "PATCH", "/me", "alice", {"links": ["ftp://files.example.com"]}, 422),
    ("javascript link", "PATCH", "/me", "alice", {"links": ["javascript:alert(1)"]}, 422),
    ("link without host", "PATCH", "/me", "alice", {"links": ["http://"]}, 422),
    ("link that is not a URL", "PATCH", "/me", "alice", {"links": ["not a url"]}, 422),
    ("link with credentials", "PATCH", "/me", "alice", {"links": ["https://u:p@example.com"]}, 422),
    ("link with a space", "PATCH", "/me", "alice", {"links": ["https://exa mple.com"]}, 422),
    ("link host without a dot", "PATCH", "/me", "alice", {"links": ["http://localhost/x"]}, 422),
    ("link with a bad port", "PATCH", "/me", "alice", {"links": ["http://example.com:99999/"]}, 422),
    ("link too long", "PATCH", "/me", "alice", {"links": ["https://example.com/" + "a" * 30]}, 422),
    ("too many links", "PATCH", "/me", "alice",
     {"links": ["https://a.example", "https://b.example", "https://c.example"]}, 422),
    ("repeated links", "PATCH", "/me", "alice", {"links": ["https://a.example", "https://A.example"]}, 422),
    ("links not a list", "PATCH", "/me", "alice", {"links": "https://a.example"}, 422),
    ("link not a string", "PATCH", "/me", "alice", {"links": [123]}, 422),
    ("locale not a tag", "PATCH", "/me", "alice", {"locale": "english please"}, 422),
    ("locale too short", "PATCH", "/me", "alice", {"locale": "e"}, 422),
    ("locale with junk", "PATCH", "/me", "alice", {"locale": "en-US-!!"}, 422),
    ("unknown privacy", "PATCH", "/me", "alice", {"privacy": "secret"}, 422),
    ("null privacy", "PATCH", "/me", "alice", {"privacy": None}, 422),
    ("read-only field", "PATCH", "/me", "alice", {"followers_count": 1000}, 422),
    ("username is not editable", "PATCH", "/me", "alice", {"username": "root"}, 422),
    ("empty patch", "PATCH", "/me", "alice", {}, 422),
    ("patch body is a list", "PATCH", "/me", "alice", [{"bio": "x"}], 422),
    ("bad media id", "PATCH", "/me", "alice", {"avatar_media_id": "../../etc/passwd"}, 422),
    ("suspended user edits", "PATCH", "/me", "carol", {"bio": "hi"}, 403),
    ("no profile yet", "PATCH", "/me", "ghost", {"bio": "hi"}, 404),
    ("non-admin edits another profile", "PATCH", "/bob", "alice", {"bio": "x"}, 403),
    ("admin edit with bad link", "PATCH", "/bob", "root", {"links": ["gopher://x.example"]}, 422),
    ("suspend twice", "POST", "/admin/users/carol/suspend", "root", {"reason": "again"}, 409),
    ("suspend unknown", "POST", "/admin/users/nobody/suspend", "root", None, 404),
    ("suspend as non-admin", "POST", "/admin/users/bob/suspend", "alice", None, 403),
    ("suspend with unknown field", "POST", "/admin/users/bob/suspend", "root", {"why": "x"}, 422),
    ("unsuspend someone not suspended", "POST", "/admin/users/bob/unsuspend", "root", None, 409),
    ("search without q", "GET", "/search", None, None, 422),
    ("bad cursor", "GET", "/bob/followers?cursor=%%%", None, None, 422),
    ("negative limit", "GET", "/bob/followers?limit=-1", None, None, 422),
    ("activity of nobody", "GET", "/me/activity", None, None, 401),
    ("my followers, anonymously", "GET", "/me/followers", None, None, 401),
    ("NUL in a username", "GET", "/a%00b", None, None, 422),
    ("NUL in a username to follow", "POST", "/a%00b/follow", "alice", None, 422),
    ("NUL in a search", "GET", "/search?q=a%00", None, None, 422),
    ("NUL in an admin filter", "GET", "/admin/users?q=%00", "root", None, 422),
    ("NUL in a role filter", "GET", "/admin/users?role=x%00", "root", None, 422),
    ("cursor beyond bigint", "GET", "/bob/followers?cursor=" + encode_cursor("followers", "9" * 19), None, None,
     422),
    ("cursor with non-ASCII digits", "GET", "/bob/followers?cursor=" + encode_cursor("followers", "\u0661"),
     None, None, 422),
    ("search cursor with NUL", "GET", "/search?q=a&cursor=" + encode_cursor("search", "a\x00"), None, None, 422),
]


async def test_every_bad_input_is_a_problem_and_changes_nothing(quark: QuarkTestEnv) -> None:
    h, who = await world(quark)
    ghost = quark.bearer(quark.user_token("00000000-0000-4000-8000-000000000000", username="ghost"))
    before = await h.snapshot()
    failures = []
    for what, method, path, caller, body, status in CASES:
        headers = ghost if caller == "ghost" else (who[caller].headers if caller else {})
        kwargs: dict[str, Any] = {"headers": headers}
        if body is not None:
            kwargs["json"] = body
        resp = await h.client.request(method, "/api/v1/users" + path, **kwargs)
        problem = resp.headers.get("content-type", "").startswith("application/problem+json")
        if resp.status_code != status or not problem or resp.json().get("status") != status:
            failures.append(f"{what}: {resp.status_code} {resp.text[:200]}")
        if await h.snapshot() != before:
            failures.append(f"{what}: state changed")
            before = await h.snapshot()
    assert not failures, "\n".join(failures)


async def test_malformed_bodies_and_tokens(quark: QuarkTestEnv) -> None:
    h, who = await world(quark)
    before = await h.snapshot()
    alice = who["alice"].headers
    for content, ctype in ((b"{not json", "application/json"), (b"", "application/json"),
                           (b'{"bio": "\\ud800"}', "application/json"), (b'{"display_name": "\\u0000"}',
                                                                          "application/json"),
                           (b"bio=x", "application/x-www-form-urlencoded"), (b"\xff\xfe", "application/json")):
        resp = await h.client.patch("/api/v1/users/me", content=content, headers={**alice, "content-type": ctype})
        assert 400 <= resp.status_code < 500, (content, resp.status_code, resp.text)
        assert resp.headers["content-type"].startswith("application/problem+json")
    for auth in ("Bearer", "Bearer not.a.jwt", "Basic YWxpY2U6cHc=", "Bearer " + "x" * 20000):
        resp = await h.client.get("/api/v1/users/me", headers={"Authorization": auth})
        assert resp.status_code == 401, (auth[:20], resp.status_code)
    assert await h.snapshot() == before
