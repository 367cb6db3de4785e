"""Social pages against the real auth, user and media modules: profile settings (display name, bio, links,
privacy, avatar through media), follow requests accepted and declined, follow / unfollow / block / mute,
followers and following lists paged with the user API's cursors, CSRF on every new form."""

from __future__ import annotations

import io
import re

from webkit import Browser, Station, sign_up, wait_profile

from quark_sdk.testing import eventually


def jpeg() -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (200, 200), (20, 140, 90)).save(buf, "JPEG")
    return buf.getvalue()


async def relationship(station: Station, b: Browser, username: str) -> dict[str, bool]:
    page = await b.get(f"/people/{username}")
    assert page.status_code == 200, page.text
    m = re.search(r'id="actions" class="actions" data-following="(\w+)" data-requested="(\w+)"', page.text)
    assert m is not None
    return {"following": m.group(1) == "true", "requested": m.group(2) == "true"}


async def test_profile_settings_and_avatar(station: Station) -> None:
    alice = station.browser()
    await sign_up(station, alice, "alice")
    await wait_profile(station, "alice")
    form = await alice.get("/settings/profile")
    assert form.status_code == 200 and 'action="/settings/avatar"' in form.text
    saved = await alice.post("/settings/profile", {"display_name": "Alice Liddell", "bio": "Down the <rabbit> hole",
                                                   "links": "https://example.com/alice\nhttps://alice.example",
                                                   "privacy": "public"})
    assert saved.status_code == 303 and saved.headers["location"] == "/settings/profile"
    shown = await alice.get("/people/alice")
    assert "Alice Liddell" in shown.text and "Down the &lt;rabbit&gt; hole" in shown.text
    assert 'href="https://alice.example" rel="nofollow ugc noopener noreferrer"' in shown.text
    # A bad link comes back as the form with a message; nothing changes.
    bad = await alice.post("/settings/profile", {"display_name": "Changed", "links": "not a link", "privacy": "public"})
    assert bad.status_code == 422 and 'name="links"' in bad.text
    assert (await station.api().get("/api/v1/users/alice")).json()["display_name"] == "Alice Liddell"

    # The avatar: uploaded to media as the person, chosen, shown once media has processed it.
    up = await alice.http.post("/settings/avatar", data={"csrf_token": alice.csrf},
                               files={"file": ("me.jpg", jpeg(), "image/jpeg")})
    assert up.status_code == 303, up.text
    api = station.api()

    async def avatar() -> dict | None:
        return (await api.get("/api/v1/users/alice")).json().get("avatar")

    shown_avatar = await eventually(avatar, timeout=30, what="the processed avatar")
    assert shown_avatar["variants"]["thumb"]
    page = await alice.get("/settings/profile")
    assert 'id="avatar-current"' in page.text and shown_avatar["variants"]["thumb"] in page.text
    image = await alice.http.get(shown_avatar["variants"]["thumb"], follow_redirects=True)
    assert image.status_code == 200 and image.headers["content-type"].startswith("image/")
    removed = await alice.post("/settings/avatar/remove")
    assert removed.status_code == 303 and await avatar() is None


async def test_follow_requests_block_mute_and_lists(station: Station) -> None:
    alice, bob, carol = station.browser(), station.browser(), station.browser()
    for b, name in ((alice, "alice"), (bob, "bob"), (carol, "carol")):
        await sign_up(station, b, name)
        await wait_profile(station, name)
    # Bob's posts are for approved followers only: following him is a request.
    await bob.get("/settings/profile")
    assert (await bob.post("/settings/profile", {"display_name": "Bob", "privacy": "followers"})).status_code == 303
    await alice.get("/people/bob")
    assert (await alice.post("/people/bob/follow")).status_code == 303
    assert await relationship(station, alice, "bob") == {"following": False, "requested": True}
    await carol.get("/people/bob")
    assert (await carol.htmx("/people/bob/follow")).status_code == 200  # HTMX: the action bar comes back
    requests = await bob.get("/settings/requests")
    assert "@alice" in requests.text and "@carol" in requests.text
    assert (await bob.post("/settings/requests/alice/accept")).status_code == 303
    assert (await bob.post("/settings/requests/carol/decline")).status_code == 303
    assert await relationship(station, alice, "bob") == {"following": True, "requested": False}
    assert await relationship(station, carol, "bob") == {"following": False, "requested": False}
    assert "@alice" not in (await bob.get("/settings/requests")).text

    # Lists, one person a page: the next page comes through the API's cursor.
    await carol.post("/people/alice/follow")
    await bob.post("/people/alice/follow")
    first = await alice.get("/people/alice/followers?limit=1")
    assert first.status_code == 200
    names = re.findall(r'<a href="/people/(\w+)">', first.text)
    more = re.search(r'<li class="more" hx-get="([^"]+)"', first.text)
    assert len(names) == 1 and more is not None
    second = await alice.http.get(more.group(1).replace("&amp;", "&"), headers={"HX-Request": "true"})
    assert second.status_code == 200 and "<html" not in second.text
    later = re.findall(r'<a href="/people/(\w+)">', second.text)
    assert len(later) == 1 and {*names, *later} == {"bob", "carol"}
    following = await alice.get("/people/alice/following")
    assert '<a href="/people/bob">' in following.text

    # Unfollow, mute, block.
    await alice.post("/people/bob/unfollow")
    assert await relationship(station, alice, "bob") == {"following": False, "requested": False}
    await alice.post("/people/carol/mute")
    assert "@carol" in (await alice.get("/settings/muted")).text
    await alice.post("/people/carol/unmute")
    assert "@carol" not in (await alice.get("/settings/muted")).text
    assert (await alice.post("/people/bob/block")).status_code == 303
    assert "@bob" in (await alice.get("/settings/blocked")).text
    assert "not available to you" in (await bob.get("/people/alice")).text
    refused = await bob.post("/people/alice/follow")
    assert refused.status_code == 403 and "not allowed" in refused.text  # a human page, not a crash
    await alice.post("/people/bob/unblock")
    assert "@bob" not in (await alice.get("/settings/blocked")).text


async def test_unknown_people_and_actions_are_404(station: Station) -> None:
    b = station.browser()
    await sign_up(station, b, "dora", verify=False)
    assert (await b.get("/people/nobody-here")).status_code == 404
    assert (await b.post("/people/dora/befriend")).status_code == 404
    assert (await b.get("/people/dora/enemies")).status_code == 404
    assert (await b.post("/settings/requests/x/maybe")).status_code == 404


NEW_FORMS = ["/settings/profile", "/settings/avatar", "/settings/avatar/remove", "/people/eve/follow",
             "/people/eve/unfollow", "/people/eve/block", "/people/eve/mute", "/settings/requests/eve/accept",
             "/messages/new", "/messages/ticket", "/notifications/read-all", "/notifications/1/open",
             "/messages/00000000-0000-0000-0000-000000000000/send",
             "/messages/00000000-0000-0000-0000-000000000000/m/1/edit",
             "/messages/00000000-0000-0000-0000-000000000000/m/1/delete"]


async def test_every_new_form_needs_the_csrf_token(station: Station) -> None:
    b = station.browser()
    await sign_up(station, b, "eve", verify=False)
    await wait_profile(station, "eve")
    await b.get("/settings/profile")
    for path in NEW_FORMS:
        refused = await b.post(path, {"display_name": "Mallory", "username": "eve"}, csrf=False)
        assert refused.status_code == 403 and "expired or did not come from this site" in refused.text, path
        cross = await b.post(path, {"display_name": "Mallory"}, headers={"Origin": "https://evil.example"})
        assert cross.status_code == 403, path
    assert (await station.api().get("/api/v1/users/eve")).json()["display_name"] != "Mallory"
