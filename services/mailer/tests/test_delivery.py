"""Mails requested by auth reach a real SMTP server; failures retry with back-off, then dead-letter."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from mailer_testkit import TOKEN, ScriptedSmtp, dead_letters, email_requested, publish, sink, start_mailer
from sqlalchemy import select

from quark_mailer.models import SentMail
from quark_sdk import telemetry
from quark_sdk.devmail import parse_mail
from quark_sdk.embedded import free_port
from quark_sdk.testing import QuarkTestEnv, eventually


def consumed(outcome: str) -> float:
    return telemetry.EVENTS_CONSUMED.labels("mailer", "mailer-mail", outcome)._value.get()


async def test_verification_mail_reaches_the_sink_as_text_and_html(quark: QuarkTestEnv, tmp_path: Path) -> None:
    box = sink(tmp_path)
    try:
        svc = await start_mailer(quark, smtp_port=box.port, data_dir=tmp_path / "data")
        event = email_requested(username="alice")
        await publish(quark, event)
        (mail,) = await eventually(lambda: box.mailbox.list(), what="a mail in the sink")
    finally:
        box.stop()
    link = f"http://station.test/verify-email?token={TOKEN}"
    assert mail.to == "alice <alice@example.com>"
    assert mail.subject == "Confirm your email address for Quark"
    assert link in mail.text and "alice" in mail.text
    assert mail.html is not None and f'href="{link}"' in mail.html
    async def recorded() -> SentMail | None:  # commits with the inbox row, just after the relay accepted it
        async with svc.ctx.database().session() as session:
            return (await session.execute(select(SentMail))).scalar_one_or_none()

    row = await eventually(recorded, what="the sent_mail row")
    assert row.event_id == event.id and row.kind == "verify_email" and row.recipient == "alice@example.com"


async def test_reset_mail_and_html_escaping(quark: QuarkTestEnv, tmp_path: Path) -> None:
    box = sink(tmp_path)
    try:
        await start_mailer(quark, smtp_port=box.port, data_dir=tmp_path / "data", station_name="Q&A <station>")
        await publish(quark, email_requested(kind="reset_password", username="<b>bob</b>",
                                             link=f"http://station.test/reset-password?token={TOKEN}&x=1"))
        (mail,) = await eventually(lambda: box.mailbox.list(), what="a mail in the sink")
    finally:
        box.stop()
    assert mail.subject == "Reset your Q&A <station> password"
    assert mail.html is not None
    assert "&lt;b&gt;bob&lt;/b&gt;" in mail.html and "<b>bob</b>" not in mail.html
    assert f"reset-password?token={TOKEN}&amp;x=1" in mail.html
    assert f"reset-password?token={TOKEN}&x=1" in mail.text


async def test_a_relay_that_answers_451_is_retried_until_it_accepts(quark: QuarkTestEnv, tmp_path: Path) -> None:
    retried = consumed("retried")
    with ScriptedSmtp(["451 4.3.0 try again later", "451 4.3.0 try again later", "250 OK"]) as smtp:
        svc = await start_mailer(quark, smtp_port=smtp.port, data_dir=tmp_path, max_attempts=5)
        await publish(quark, email_requested())
        await eventually(lambda: smtp.handler.accepted, what="the third attempt accepted")
    assert smtp.handler.calls == 3
    assert consumed("retried") - retried == 2
    assert TOKEN.encode() in smtp.handler.accepted[0]
    assert await dead_letters(svc) == []


async def test_an_unreachable_relay_retries_then_dead_letters(quark: QuarkTestEnv, tmp_path: Path,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    retried, dead = consumed("retried"), consumed("dead_lettered")
    caplog.set_level(logging.DEBUG)
    svc = await start_mailer(quark, smtp_port=free_port(), data_dir=tmp_path, max_attempts=3, env="prod")
    event = email_requested()
    await publish(quark, event)
    (dl,) = await eventually(lambda: dead_letters(svc), what="the mail dead-lettered")
    assert dl.subject.endswith("quark.dlq.mailer.mail")
    assert dl.headers["Quark-Consumer"] == "mailer-mail"
    assert "TemporaryDeliveryError" in dl.headers["Quark-Error"] and "unavailable" in dl.headers["Quark-Error"]
    # The counter moves just after the dead letter is stored.
    await eventually(lambda: consumed("dead_lettered") - dead == 1, what="dead_lettered counted")
    assert consumed("retried") - retried == 2
    # The event (with its token) is kept in the dead-letter stream for a replay; no log line carries it.
    assert event.id.encode() in dl.data
    assert caplog.records and all(TOKEN not in r.getMessage() for r in caplog.records)


async def test_a_permanent_refusal_dead_letters_at_once(quark: QuarkTestEnv, tmp_path: Path,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with ScriptedSmtp(["550 5.1.1 no such user here"]) as smtp:
        svc = await start_mailer(quark, smtp_port=smtp.port, data_dir=tmp_path, env="prod")
        await publish(quark, email_requested())
        (dl,) = await eventually(lambda: dead_letters(svc), what="the mail dead-lettered")
    assert smtp.handler.calls == 1
    assert "550" in dl.headers["Quark-Error"] and "no such user" in dl.headers["Quark-Error"]
    assert all(TOKEN not in r.getMessage() for r in caplog.records)


async def test_a_kind_without_template_is_dead_lettered(quark: QuarkTestEnv, tmp_path: Path) -> None:
    with ScriptedSmtp(["250 OK"]) as smtp:
        svc = await start_mailer(quark, smtp_port=smtp.port, data_dir=tmp_path)
        await publish(quark, email_requested(kind="newsletter"))
        await publish(quark, email_requested(email=""))  # does not fit the payload model
        dls = await eventually(lambda: _at_least(dead_letters(svc), 2), what="both dead-lettered")
    errors = " | ".join(d.headers["Quark-Error"] for d in dls)
    assert "no template for mail kind 'newsletter'" in errors and "does not match EmailRequestedIn" in errors
    assert smtp.handler.calls == 0


async def _at_least(coro: object, n: int) -> list[object]:
    items = await coro  # type: ignore[misc]
    return items if len(items) >= n else []


def test_parse_mail_reads_both_parts() -> None:
    raw = (b"From: a@x\r\nTo: b@y\r\nSubject: hi\r\nDate: Fri, 04 Dec 2026 10:00:00 +0000\r\n"
           b"Content-Type: text/plain\r\n\r\nhello\r\n")
    mail = parse_mail("00000000000000000001-abcd", raw)
    assert (mail.subject, mail.text.strip(), mail.html) == ("hi", "hello", None)
