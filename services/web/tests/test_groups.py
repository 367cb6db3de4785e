"""Group chats, channels and attachments from the messenger pages, against the real auth, user, media and
messaging modules: a group is renamed, gains and loses members (owner only), a member leaves; a channel is
created, found, subscribed to, read-only for subscribers; an image sent in a chat goes through media and
shows in the chat once processed."""

from __future__ import annotations

import io
import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from webkit import Browser, Station, sign_up, start_station, wait_profile

from quark_sdk.testing import QuarkTestEnv


@pytest.fixture
async def chatting(quark: QuarkTestEnv, tmp_path: Path) -> AsyncIterator[Station]:
    s = await start_station(quark, tmp_path, with_media=True, with_messaging=True)
    try:
        yield s
    finally:
        await s.close()


async def people(station: Station, *names: str) -> list[Browser]:
    out = []
    for name in names:
        b = station.browser()
        await sign_up(station, b, name)
        await wait_profile(station, name)
        out.append(b)
    return out


def chat_id(location: str) -> str:
    m = re.fullmatch(r"/messages/([0-9a-f-]{36})", location)
    assert m is not None, location
    return m.group(1)


def png() -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (300, 200), (200, 60, 40)).save(buf, "PNG")
    return buf.getvalue()


async def test_group_rename_invite_remove_and_leave(chatting: Station) -> None:
    alice, bob, carol, dan = await people(chatting, "alice", "bob", "carol", "dan")
    await alice.get("/messages")
    made = await alice.post("/messages/new", {"title": "Book club", "members": "bob, @carol"})
    assert made.status_code == 303
    cid = chat_id(made.headers["location"])
    page = await alice.get(f"/messages/{cid}")
    assert f'href="/messages/{cid}/members"' in page.text

    members = await alice.get(f"/messages/{cid}/members")
    assert members.status_code == 200 and 'action="/messages/' + cid + '/rename"' in members.text
    assert all(f"@{n}" in members.text for n in ("alice", "bob", "carol"))
    renamed = await alice.post(f"/messages/{cid}/rename", {"title": "Reading circle"})
    assert renamed.status_code == 303
    assert "Reading circle" in (await bob.get(f"/messages/{cid}")).text
    # Bob is a member, not an admin: no management forms, and messaging refuses him anyway.
    bobs = await bob.get(f"/messages/{cid}/members")
    assert "/rename" not in bobs.text and "/invite" not in bobs.text and 'id="chat-leave"' in bobs.text
    refused = await bob.post(f"/messages/{cid}/rename", {"title": "Mine now"})
    assert refused.status_code == 403
    assert "Reading circle" in (await alice.get(f"/messages/{cid}/members")).text

    added = await alice.post(f"/messages/{cid}/invite", {"usernames": "dan"})
    assert added.status_code == 303
    assert (await dan.get(f"/messages/{cid}")).status_code == 200
    unknown = await alice.post(f"/messages/{cid}/invite", {"usernames": "nobody-here"})
    assert unknown.status_code == 404 and "could not find anyone" in unknown.text

    carol_id = (await carol.http.get("/api/v1/web/me")).json()["account"]["id"]
    removed = await alice.post(f"/messages/{cid}/members/{carol_id}/remove")
    assert removed.status_code == 303
    assert (await carol.get(f"/messages/{cid}")).status_code in (403, 404)
    left = await bob.post(f"/messages/{cid}/leave")
    assert left.status_code == 303 and left.headers["location"] == "/messages"
    listing = await alice.get(f"/messages/{cid}/members")
    assert "@dan" in listing.text and "@bob" not in listing.text and "@carol" not in listing.text
    assert (await alice.post(f"/messages/{cid}/leave", csrf=False)).status_code == 403


async def test_channels_create_find_subscribe_read_only(chatting: Station) -> None:
    alice, bob = await people(chatting, "alice", "bob")
    await alice.get("/channels")
    made = await alice.post("/channels/new", {"title": "Station news", "members": ""})
    assert made.status_code == 303
    cid = chat_id(made.headers["location"])
    sent = await alice.post(f"/messages/{cid}/send", {"body": "First issue is out"})
    assert sent.status_code == 303

    found = await bob.get("/channels?q=news")
    assert found.status_code == 200 and "Station news" in found.text
    assert f'action="/channels/{cid}/subscribe"' in found.text
    assert "Station news" not in (await bob.get("/channels?q=zzz")).text
    sub = await bob.post(f"/channels/{cid}/subscribe")
    assert sub.status_code == 303 and sub.headers["location"] == f"/messages/{cid}"
    page = await bob.get(f"/messages/{cid}")
    assert "First issue is out" in page.text and 'id="compose"' not in page.text  # subscribers read only
    assert (await bob.post(f"/messages/{cid}/send", {"body": "me too"})).status_code == 403
    chats = await bob.get("/messages")
    assert "Station news" in chats.text
    assert (await bob.post(f"/messages/{cid}/leave")).status_code == 303
    assert "Station news" not in (await bob.get("/messages")).text


async def test_an_image_attachment_goes_through_media_and_shows(chatting: Station) -> None:
    alice, bob = await people(chatting, "alice", "bob")
    await alice.get("/messages")
    cid = chat_id((await alice.post("/messages/new", {"username": "bob"})).headers["location"])
    await alice.get(f"/messages/{cid}")
    sent = await alice.http.post(f"/messages/{cid}/send", data={"csrf_token": alice.csrf, "body": "Look"},
                                 files={"file": ("sunset.png", png(), "image/png")},
                                 headers={"HX-Request": "true", "X-CSRF-Token": alice.csrf})
    assert sent.status_code == 200, sent.text
    m = re.search(r'src="/messages/attachment/([A-Za-z0-9_-]+)\?size=thumb"', sent.text)
    assert m is not None, sent.text
    media_id = m.group(1)
    # The other person's page shows it; the image route waits for media's variants, then redirects to one.
    page = await bob.get(f"/messages/{cid}")
    assert f"/messages/attachment/{media_id}" in page.text
    img = await bob.http.get(f"/messages/attachment/{media_id}?size=thumb")
    assert img.status_code == 303 and img.headers["location"].endswith(f"/api/v1/media/{media_id}/variants/thumb")
    data = await bob.http.get(img.headers["location"])
    assert data.status_code == 200 and data.headers["content-type"].startswith("image/")
    # Only an attachment alone is fine too; neither text nor image is a 422.
    alone = await alice.http.post(f"/messages/{cid}/send", data={"csrf_token": alice.csrf},
                                  files={"file": ("b.png", png(), "image/png")})
    assert alone.status_code == 303
    empty = await alice.post(f"/messages/{cid}/send", {"body": "  "})
    assert empty.status_code == 422
    # Not an image: media's refusal, in words.
    bad = await alice.http.post(f"/messages/{cid}/send", data={"csrf_token": alice.csrf, "body": "x"},
                                files={"file": ("a.png", b"not an image at all", "image/png")})
    assert bad.status_code in (415, 422) and "<html" in bad.text
    assert (await bob.http.get("/messages/attachment/nope!")).status_code == 422
