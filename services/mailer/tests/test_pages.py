"""The dev mailbox (/dev/mail) outside prod only (the links it shows open the web client's pages)."""

from __future__ import annotations

from pathlib import Path

from mailer_testkit import TOKEN, email_requested, publish, sink, start_mailer

from quark_sdk.devmail import Mailbox
from quark_sdk.embedded import free_port
from quark_sdk.testing import QuarkTestEnv, assert_problem, eventually


async def test_dev_mailbox_lists_newest_first_and_links_are_clickable(quark: QuarkTestEnv, tmp_path: Path) -> None:
    box = sink(tmp_path)
    try:
        svc = await start_mailer(quark, smtp_port=box.port, data_dir=tmp_path / "data")
        await publish(quark, email_requested(email="first@example.com"))
        await eventually(lambda: box.mailbox.ids(), what="first mail")
        await publish(quark, email_requested(kind="reset_password", email="second@example.com",
                                             link=f"http://station.test/reset-password?token={TOKEN}"))
        await eventually(lambda: len(box.mailbox.ids()) == 2, what="second mail")
    finally:
        box.stop()
    page = await svc.client.get("/dev/mail")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert page.text.index("second@example.com") < page.text.index("first@example.com")
    newest, oldest = box.mailbox.ids()
    assert f'href="/dev/mail/{newest}"' in page.text and f'href="/dev/mail/{oldest}"' in page.text

    one = await svc.client.get(f"/dev/mail/{oldest}")
    link = f"http://station.test/verify-email?token={TOKEN}"
    assert one.status_code == 200 and f'<a href="{link}">{link}</a>' in one.text
    html = await svc.client.get(f"/dev/mail/{oldest}/html")
    assert html.status_code == 200 and f'href="{link}"' in html.text
    assert html.headers["content-security-policy"].startswith("sandbox")

    assert_problem(await svc.client.get("/dev/mail/00000000000000000000-ffffffff"), 404)
    assert_problem(await svc.client.get("/dev/mail/..%2F..%2Fetc%2Fpasswd"), 404)


async def test_an_empty_mailbox_says_so(quark: QuarkTestEnv, tmp_path: Path) -> None:
    svc = await start_mailer(quark, smtp_port=free_port(), data_dir=tmp_path)
    page = await svc.client.get("/dev/mail")
    assert page.status_code == 200 and "No mail yet" in page.text


async def test_production_has_no_dev_mailbox(quark: QuarkTestEnv, tmp_path: Path) -> None:
    Mailbox(tmp_path / "mail").store(b"Subject: leaked?\r\n\r\nbody\r\n")
    svc = await start_mailer(quark, smtp_port=free_port(), data_dir=tmp_path, env="prod")
    for path in ("/dev/mail", f"/dev/mail/{Mailbox(tmp_path / 'mail').ids()[0]}"):
        body = assert_problem(await svc.client.get(path), 404)
        assert "leaked" not in str(body)


async def test_the_mailbox_escapes_what_it_reflects(quark: QuarkTestEnv, tmp_path: Path) -> None:
    svc = await start_mailer(quark, smtp_port=free_port(), data_dir=tmp_path)
    evil = '"><script>alert(1)</script>'
    Mailbox(tmp_path / "mail").store(f"Subject: {evil}\r\nTo: {evil}\r\n\r\nvisit http://x.test/a?b=<c>\r\n".encode())
    listing = (await svc.client.get("/dev/mail")).text
    assert "<script>alert(1)" not in listing
    (mail_id,) = Mailbox(tmp_path / "mail").ids()
    one = (await svc.client.get(f"/dev/mail/{mail_id}")).text
    assert "<script>alert(1)" not in one and "<c>" not in one and "&lt;c&gt;" in one
