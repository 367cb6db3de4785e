"""The pages against the real auth, user, media and blog modules (in-process station): sign-up and
sign-in journeys, reading, writing with an image, comments, reactions, reports, search, Atom, i18n."""

from __future__ import annotations

import re
import time
from typing import Any
from xml.etree import ElementTree as ET

import pyotp
from webkit import PASSWORD, Browser, Station, sign_up, wait_profile

from quark_sdk.testing import eventually


async def token_of(station: Station, b: Browser) -> str:
    sess = await station.web.sessions.load(str(b.http.cookies.get("quark_session")))
    assert sess is not None
    return str(sess.access_token)


def jpeg() -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (320, 200), (200, 120, 40)).save(buf, "JPEG")
    return buf.getvalue()


async def test_register_verify_and_sign_in_with_two_factors(station: Station) -> None:
    b = station.browser()
    form = await b.get("/register")
    assert form.status_code == 200 and 'autocomplete="new-password"' in form.text
    # Bad input comes back as a form with a human message, not a crash.
    bad = await b.post("/register", {"username": "x", "email": "nope", "password": "short"})
    assert bad.status_code == 422 and "Some fields are missing or invalid" in bad.text
    user_id = await sign_up(station, b, "alice", verify=False)  # register -> signed in
    # The mail's link opens a page with a button; opening it (as a mail scanner would) confirms nothing.
    token = await station.emailed_token(user_id)
    opened = await station.browser().get(f"/verify-email?token={token}")
    assert opened.status_code == 200 and 'id="verify-confirm"' in opened.text
    assert (await b.http.get("/api/v1/web/me")).json()["account"]["email_verified"] is False
    confirmed = await b.post("/verify-email", {"token": token})
    assert confirmed.status_code == 200 and 'data-ok="true"' in confirmed.text
    taken = station.browser()
    await taken.get("/register")
    dup = await taken.post("/register", {"username": "alice", "email": "other@example.com", "password": PASSWORD})
    assert dup.status_code == 409 and "already exists" in dup.text
    account = (await b.http.get("/api/v1/web/me")).json()["account"]
    assert account["id"] == user_id and account["email_verified"] is True
    await b.get("/verify-email?token=" + "x" * 40)
    again = await b.post("/verify-email", {"token": "x" * 40})
    assert again.status_code == 400 and 'data-ok="false"' in again.text and "invalid or has expired" in again.text

    # Enable 2FA (the settings page comes with the next helper's work; the API is the auth module's).
    api = station.api()
    headers = {"Authorization": f"Bearer {await token_of(station, b)}"}
    secret = (await api.post("/api/v1/auth/2fa/setup", headers=headers)).json()["secret"]
    totp = pyotp.TOTP(secret)
    codes = (await api.post("/api/v1/auth/2fa/confirm", json={"code": totp.now()}, headers=headers)).json()
    recovery = codes["recovery_codes"]
    assert (await b.post("/logout")).status_code == 303

    await b.get("/login")
    wrong_password = await b.post("/login", {"login": "alice", "password": "not the password"})
    assert wrong_password.status_code == 401 and "Wrong username, email or password." in wrong_password.text
    step = await b.post("/login", {"login": "alice", "password": PASSWORD, "next": "/drafts"})
    assert step.status_code == 200 and 'action="/login/mfa"' in step.text
    pending = re.search(r'name="pending" value="([^"]+)"', step.text)
    assert pending is not None and "mfa_token" not in step.text
    wrong = await b.post("/login/mfa", {"pending": pending.group(1), "code": "000000", "next": "/drafts"})
    assert wrong.status_code == 401 and "The code is wrong" in wrong.text
    ok = await b.post("/login/mfa", {"pending": pending.group(1), "code": totp.at(time.time() + 30),
                                     "next": "/drafts"})
    assert ok.status_code == 303 and ok.headers["location"] == "/drafts", ok.text
    assert (await b.get("/drafts")).status_code == 200

    # And with a recovery code.
    await b.post("/logout")
    await b.get("/login")
    step = await b.post("/login", {"login": "alice@example.com", "password": PASSWORD})
    pending = re.search(r'name="pending" value="([^"]+)"', step.text)
    assert pending is not None
    ok = await b.post("/login/mfa", {"pending": pending.group(1), "code": recovery[0]})
    assert ok.status_code == 303 and ok.headers["location"] == "/"
    sessions = await b.get("/settings/sessions")
    assert sessions.text.count("data-session=") >= 1 and "(this device)" in sessions.text


async def test_forgot_and_reset_password(station: Station) -> None:
    b = station.browser()
    user_id = await sign_up(station, b, "bob", verify=False)
    await b.post("/logout")
    await b.get("/forgot-password")
    sent = await b.post("/forgot-password", {"email": "bob@example.com"})
    assert sent.status_code == 303 and sent.headers["location"] == "/login"
    notice = await b.get("/login")
    assert "we sent it a link to reset the password" in notice.text
    token = await station.emailed_token(user_id, "reset_password")
    form = await b.get(f"/reset-password?token={token}")
    assert form.status_code == 200 and token in form.text
    done = await b.post("/reset-password", {"token": token, "new_password": "a brand new passphrase"})
    assert done.status_code == 303
    await b.get("/login")
    assert (await b.post("/login", {"login": "bob", "password": PASSWORD})).status_code == 401
    assert (await b.post("/login", {"login": "bob", "password": "a brand new passphrase"})).status_code == 303
    reused = await b.post("/reset-password", {"token": token, "new_password": "yet another passphrase"})
    assert reused.status_code == 400 and "invalid or has expired" in reused.text


async def upload_image(b: Browser) -> dict[str, Any]:
    await b.get("/write")
    resp = await b.http.post("/write/upload", files={"file": ("sunset.jpg", jpeg(), "image/jpeg")},
                             headers={"X-CSRF-Token": b.csrf, "Accept": "application/json"})
    assert resp.status_code == 201, resp.text
    media_id = resp.json()["id"]

    async def ready() -> dict[str, Any] | None:
        m = (await b.http.get(f"/write/media/{media_id}")).json()
        return m if m["status"] == "ready" else None

    return dict(await eventually(ready, timeout=30, what="image processed"))


async def test_write_with_image_read_comment_react_report(station: Station) -> None:
    alice, bob = station.browser(), station.browser()
    await sign_up(station, alice, "alice", verify=False)
    await sign_up(station, bob, "bob", verify=False)
    await wait_profile(station, "alice")

    media = await upload_image(alice)
    assert media["thumb"].endswith("/variants/thumb") and media["medium"].endswith("/variants/medium")
    preview = await alice.htmx("/write-preview", {"body": f"Hello **world**\n\n![sunset]({media['medium']})"})
    assert "<strong>world</strong>" in preview.text and f'src="{media["medium"]}"' in preview.text
    body = f"Hello **world** from the web client.\n\n![sunset]({media['medium']})"
    saved = await alice.post("/write", {"title": "First light", "body": body, "tags": "photos, #Quark",
                                        "visibility": "public", "media_ids": media["id"], "action": "publish"})
    assert saved.status_code == 303 and saved.headers["location"] == "/@alice/first-light"

    page = await bob.get("/@alice/first-light")
    assert page.status_code == 200
    assert '<meta property="og:title" content="First light">' in page.text
    assert re.search(r'<meta property="og:image" content="http://testserver/api/v1/media/[^"]+/variants/medium">',
                     page.text)
    assert '<link rel="canonical" href="http://testserver/@alice/first-light">' in page.text
    assert "<strong>world</strong>" in page.text and f'src="{media["medium"]}"' in page.text
    post_id = re.search(r'data-post="([0-9a-f-]+)"', page.text).group(1)  # type: ignore[union-attr]
    image = await bob.http.get(media["medium"])
    assert image.status_code == 200 and image.headers["content-type"] == "image/webp"

    # Comments: a comment and a threaded reply (HTMX swaps the whole section).
    first = await bob.htmx(f"/p/{post_id}/comments", {"body": "Lovely *colours*"})
    assert first.status_code == 200 and "<em>colours</em>" in first.text
    comment_id = re.search(r'data-comment="([0-9a-f-]+)"', first.text).group(1)  # type: ignore[union-attr]
    reply = await alice.htmx(f"/p/{post_id}/comments", {"body": "Thank you!", "parent_id": comment_id})
    assert 'class="comment d1"' in reply.text and "Thank you!" in reply.text
    # Reactions toggle.
    on = await bob.htmx(f"/p/{post_id}/react", {"kind": "love"})
    assert re.search(r'data-kind="love" aria-pressed="true" aria-label="Love: 1"', on.text), on.text
    off = await bob.htmx(f"/p/{post_id}/react", {"kind": "love"})
    assert re.search(r'data-kind="love" aria-pressed="false" aria-label="Love: 0"', off.text)
    await bob.htmx(f"/p/{post_id}/react", {"kind": "like"})
    bad = await bob.htmx(f"/p/{post_id}/react", {"kind": "explode"})
    assert bad.status_code == 422 and bad.headers["HX-Retarget"] == "#flash"
    # Report (HTMX answers into the flash region).
    reported = await bob.htmx(f"/p/{post_id}/report", {"reason": "spam"})
    assert reported.status_code == 200 and "Moderators will look" in reported.text
    again = await bob.htmx(f"/p/{post_id}/report", {"reason": "spam"})
    assert again.status_code == 409 and "already reported" in again.text
    # Anonymous readers see the post, counts and comments, but no forms.
    anon = station.browser()
    seen = await anon.get("/@alice/first-light")
    assert "Lovely" in seen.text and "Sign in to comment" in seen.text and 'action="/p/' not in seen.text

    # Feeds, blog, tags, search, Atom.
    explore = await anon.get("/explore")
    assert "First light" in explore.text and "/variants/medium" in explore.text
    blog = await anon.get("/@alice")
    assert blog.status_code == 200 and "First light" in blog.text and "Alice" in blog.text
    tag = await anon.get("/tags/quark")
    assert "First light" in tag.text
    found = await anon.get("/search?q=client")
    assert "First light" in found.text and "<mark>client</mark>" in found.text, found.text
    atom = await anon.http.get("/@alice/feed.atom")
    assert atom.headers["content-type"].startswith("application/atom+xml")
    feed = ET.fromstring(atom.content)  # noqa: S314 - our own module's output
    ns = {"a": "http://www.w3.org/2005/Atom"}
    assert [e.findtext("a:title", namespaces=ns) for e in feed.findall("a:entry", ns)] == ["First light"]
    link = feed.find("a:entry/a:link", ns)
    assert link is not None and link.get("href") == "http://testserver/@alice/first-light"
    assert (await anon.get("/@nobody-here")).status_code == 404
    assert (await anon.get("/@alice/no-such-post")).status_code == 404

    # Editing: the author sees the source, changes it, unpublishes to a draft.
    edit = await alice.get(f"/write/{post_id}")
    assert "Hello **world**" in edit.text
    assert (await bob.get(f"/write/{post_id}")).status_code in (403, 404)
    saved = await alice.post(f"/write/{post_id}", {"title": "First light, edited", "body": body, "tags": "photos",
                                                   "visibility": "public", "media_ids": media["id"],
                                                   "action": "unpublish"})
    assert saved.status_code == 303 and saved.headers["location"] == "/drafts"
    drafts = await alice.get("/drafts?status=draft")
    assert "First light, edited" in drafts.text


async def test_home_feed_scrolls_with_the_api_cursors(station: Station) -> None:
    b = station.browser()
    await sign_up(station, b, "carol", verify=False)
    await wait_profile(station, "carol")
    api = station.api()
    headers = {"Authorization": f"Bearer {await token_of(station, b)}"}
    for i in range(13):
        r = await api.post("/api/v1/posts", json={"title": f"Note {i:02d}", "body": "text", "publish": True},
                           headers=headers)
        assert r.status_code == 201
    home = await b.get("/")
    titles = re.findall(r">Note (\d\d)<", home.text)
    assert titles == [f"{i:02d}" for i in range(12, 2, -1)]
    more = re.search(r'hx-get="([^"]+)" hx-trigger="revealed"', home.text)
    assert more is not None
    nxt = await b.http.get(more.group(1).replace("&amp;", "&"), headers={"HX-Request": "true"})
    assert nxt.status_code == 200 and "<html" not in nxt.text
    assert re.findall(r">Note (\d\d)<", nxt.text) == ["02", "01", "00"]
    assert 'hx-trigger="revealed"' not in nxt.text
    # Without JavaScript the same link is a full page.
    full = await b.get(more.group(1).replace("&amp;", "&"))
    assert "<html" in full.text and "Note 00" in full.text


async def test_pages_speak_russian_and_switch_language(station: Station) -> None:
    b = station.browser()
    ru = await b.http.get("/login", headers={"Accept-Language": "ru-RU,ru;q=0.9,en;q=0.8"})
    assert '<html lang="ru"' in ru.text and "Войти" in ru.text
    en = await b.http.get("/login", headers={"Accept-Language": "de, en;q=0.5"})
    assert '<html lang="en"' in en.text and "Sign in" in en.text
    switch = await b.http.get("/lang?to=ru&next=/register")
    assert switch.status_code == 303 and switch.headers["location"] == "/register"
    page = await b.get("/register", headers={"Accept-Language": "en"})
    assert '<html lang="ru"' in page.text and "Зарегистрироваться" in page.text
    # Errors are in the page's language too.
    await b.get("/login")
    wrong = await b.post("/login", {"login": "nobody", "password": "whatever it is"})
    assert wrong.status_code == 401 and "Неверное имя пользователя, email или пароль." in wrong.text
    missing = await b.get("/no-such-page")
    assert missing.status_code == 404 and "Страница не найдена" in missing.text
    theme = await b.http.get("/theme?to=dark&next=/login")
    assert theme.status_code == 303
    assert 'data-theme="dark"' in (await b.get("/login")).text


async def test_ai_drafts_ask_edit_approve_reject(quark: Any, tmp_path: Any) -> None:
    """Human in the loop: the assistant's draft is edited, approved into a blog *draft*, never published."""
    from webkit import start_station

    station = await start_station(quark, tmp_path, with_media=False, with_ai=True)
    try:
        b = station.browser()
        await sign_up(station, b, "dana", verify=False)
        await wait_profile(station, "dana")
        assert (await b.get("/ai/drafts")).status_code == 200
        asked = await b.post("/ai/drafts", {"topic": "Winter cycling in the city", "tone": "friendly",
                                            "length": "short"})
        assert asked.status_code == 303, asked.text
        page = await b.get(asked.headers["location"])
        assert page.status_code == 200 and 'value="approve"' in page.text
        draft_id = asked.headers["location"].rsplit("/", 1)[1]
        saved = await b.post(f"/ai/drafts/{draft_id}", {"title": "Cycling through winter", "body": "Edited text.",
                                                        "tags": "cycling", "action": "save"})
        assert saved.status_code == 303
        assert "Cycling through winter" in (await b.get(f"/ai/drafts/{draft_id}")).text
        approved = await b.post(f"/ai/drafts/{draft_id}", {"title": "Cycling through winter",
                                                           "body": "Edited text.", "tags": "cycling",
                                                           "action": "approve"})
        assert approved.status_code == 303 and approved.headers["location"].startswith("/write/")
        editor = await b.get(approved.headers["location"])
        assert editor.status_code == 200 and "Edited text." in editor.text
        drafts = await b.get("/drafts?status=draft")
        assert "Cycling through winter" in drafts.text
        assert "Cycling through winter" not in (await b.get("/explore")).text  # nothing published by itself
        # Another draft, rejected.
        other = await b.post("/ai/drafts", {"topic": "Night trains", "tone": "neutral", "length": "short"})
        other_id = other.headers["location"].rsplit("/", 1)[1]
        rejected = await b.post(f"/ai/drafts/{other_id}", {"action": "reject"})
        assert rejected.status_code == 303 and rejected.headers["location"] == "/ai/drafts"
        listing = await b.get("/ai/drafts")
        assert "rejected" in listing.text and "approved" in listing.text
    finally:
        await station.close()


async def test_a_module_that_is_down_shows_a_degraded_section(station: Station) -> None:
    b = station.browser()
    await sign_up(station, b, "erin", verify=False)
    await wait_profile(station, "erin")  # the user module learns of the account from auth's event
    # The blog leaves the gateway (as when its container stops): its paths reach no module.
    station.gateway._routes = [(p, m) for p, m in station.gateway._routes if m.name != "blog"]
    home = await b.get("/")
    assert home.status_code == 200 and 'data-degraded="blog"' in home.text
    assert "Posts are not available right now" in home.text and "@erin" in home.text  # the rest still works
    blog = await b.get("/@erin")
    assert blog.status_code == 200 and 'data-degraded="blog"' in blog.text
    post = await b.get("/@erin/anything")
    assert post.status_code == 503 and "not available right now" in post.text
    ru = await b.get("/drafts", headers={"Accept-Language": "ru"})
    assert ru.status_code == 503 and "Эта часть станции сейчас недоступна" in ru.text


async def test_schedule_a_post_from_the_editor(station: Station) -> None:
    """The editor's local date-time plus the browser's UTC offset (getTimezoneOffset) becomes a UTC schedule."""
    b = station.browser()
    await sign_up(station, b, "fay", verify=False)
    await b.get("/write")
    missing = await b.post("/write", {"title": "Later", "body": "Soon.", "action": "schedule", "scheduled_at": ""})
    assert missing.status_code == 422 and 'aria-invalid="true"' in missing.text
    saved = await b.post("/write", {"title": "Later", "body": "Soon.", "visibility": "followers",
                                    "scheduled_at": "2099-01-02T03:04", "tz_offset": "-180", "action": "schedule"})
    assert saved.status_code == 303 and saved.headers["location"] == "/drafts"
    listing = await b.get("/drafts?status=scheduled")
    assert "Later" in listing.text and "2099-01-02 00:04" in listing.text  # 03:04 at UTC+3
    assert "Later" not in (await b.get("/explore")).text
