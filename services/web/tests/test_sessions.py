"""Browser sessions: tokens kept in Valkey, transparent refresh (one rotation even under parallel
requests), sign-out, revoke from the sessions page."""

from __future__ import annotations

import asyncio
import re

from webkit import Station, sign_up


def session_id(b) -> str:  # type: ignore[no-untyped-def]
    return str(b.http.cookies.get("quark_session"))


async def expire_access_token(station: Station, sid: str) -> str:
    store = station.web.sessions
    sess = await store.load(sid)
    assert sess is not None
    old = sess.access_token
    sess.access_exp = 0
    await store.save(sid, sess)
    return old


async def test_an_expiring_access_token_is_refreshed_transparently(station: Station) -> None:
    b = station.browser()
    await sign_up(station, b, "alice", verify=False)
    sid = session_id(b)
    old = await expire_access_token(station, sid)
    page = await b.get("/drafts")
    assert page.status_code == 200 and "My posts" in page.text
    sess = await station.web.sessions.load(sid)
    assert sess is not None and sess.access_token != old
    # The old refresh token was rotated: the new one works, and the person stays signed in.
    assert (await b.get("/settings/sessions")).status_code == 200


async def test_parallel_requests_refresh_once_and_never_trip_reuse_detection(station: Station) -> None:
    b = station.browser()
    await sign_up(station, b, "bob", verify=False)
    sid = session_id(b)
    await expire_access_token(station, sid)
    pages = await asyncio.gather(*(b.http.get("/drafts") for _ in range(6)))
    assert [p.status_code for p in pages] == [200] * 6
    assert all("@bob" in p.text for p in pages)
    # Had two requests presented the same refresh token, auth would have revoked the whole family.
    sess = await station.web.sessions.load(sid)
    assert sess is not None
    await expire_access_token(station, sid)
    again = await b.get("/settings/sessions")
    assert again.status_code == 200 and "@bob" in again.text


async def test_a_refresh_that_lost_the_race_uses_the_winners_tokens(station: Station) -> None:
    """A request that loaded the session before another refreshed it, and asks for the lock after the
    other let go of it, must not present the spent refresh token (auth would revoke the family)."""
    b = station.browser()
    await sign_up(station, b, "dave", verify=False)
    sid = session_id(b)
    await expire_access_token(station, sid)
    store = station.web.sessions
    stale = await store.load(sid)  # loaded before the other request's refresh ...
    assert stale is not None
    winner = await store.refresh(sid, await store.load(sid))  # type: ignore[arg-type]
    assert winner is not None and winner.access_token != stale.access_token
    late = await store.refresh(sid, stale)  # ... refreshing after it: takes the winner's tokens
    assert late is not None and late.access_token == winner.access_token
    assert late.refresh_token == winner.refresh_token
    # The family was not revoked: the browser stays signed in, and refreshes again later.
    page = await b.get("/drafts")
    assert page.status_code == 200 and "@dave" in page.text
    await expire_access_token(station, sid)
    assert (await b.get("/settings/sessions")).status_code == 200


async def test_an_instance_keeps_a_session_it_read_for_a_second_and_its_own_changes_at_once(station: Station) -> None:
    """`session_cache_seconds`: a page of a session read in the last second costs no Valkey read; a sign-out
    here takes effect at once, one on another instance (the key gone from Valkey) once the second is over."""
    b = station.browser()
    await sign_up(station, b, "erin", verify=False)
    sid = session_id(b)
    store = station.web.sessions
    assert station.web.settings.session_cache_seconds == 1.0
    first = await store.load(sid)
    assert first is not None
    first.username = "changed by the caller"  # each caller gets its own copy
    again = await store.load(sid)
    assert again is not None and again.username == "erin"
    # Another instance signs the browser out: Valkey no longer has the session ...
    from quark_web.sessions import digest

    key = station.web.ctx.key("session", digest(sid))
    await station.web.redis.delete(key)
    assert (await b.get("/drafts")).status_code == 200  # ... this instance still knows it, within its second
    store._recent[key] = (0.0, store._recent[key][1])  # the second is over
    page = await b.get("/drafts")
    assert page.status_code == 303 and page.headers["location"].startswith("/login")
    assert key not in store._recent and await store.load(sid) is None
    # This instance's own sign-out takes effect at once.
    c = station.browser()
    await sign_up(station, c, "finn", verify=False)
    assert (await c.get("/drafts")).status_code == 200
    await c.post("/logout")
    page = await c.get("/drafts")
    assert page.status_code == 303 and page.headers["location"].startswith("/login")


async def test_a_revoked_session_signs_the_browser_out(station: Station) -> None:
    phone, laptop = station.browser(), station.browser()
    await sign_up(station, phone, "carol", verify=False)
    await laptop.get("/login")
    resp = await laptop.post("/login", {"login": "carol", "password": "correct horse battery staple"})
    assert resp.status_code == 303
    listing = await laptop.get("/settings/sessions")
    ids = re.findall(r'data-session="([0-9a-f-]+)"', listing.text)
    assert len(ids) == 2
    phone_session = (await station.web.sessions.load(session_id(phone)))
    assert phone_session is not None and phone_session.auth_session_id in ids
    revoked = await laptop.post(f"/settings/sessions/{phone_session.auth_session_id}/revoke")
    assert revoked.status_code == 303 and revoked.headers["location"] == "/settings/sessions"
    # The phone's refresh token is dead: its next refresh signs it out (no error page).
    await expire_access_token(station, session_id(phone))
    page = await phone.get("/drafts")
    assert page.status_code == 303 and page.headers["location"].startswith("/login")
    assert await station.web.sessions.load(session_id(phone) or "x" * 43) is None
    assert (await laptop.get("/drafts")).status_code == 200


async def test_sign_out_forgets_the_session(station: Station) -> None:
    b = station.browser()
    await sign_up(station, b, "dave", verify=False)
    sid = session_id(b)
    out = await b.post("/logout")
    assert out.status_code == 303 and out.headers["location"] == "/login"
    assert await station.web.sessions.load(sid) is None
    assert (await b.get("/drafts")).status_code == 303
    assert (await b.http.get("/api/v1/web/me")).status_code == 401
