"""SMS requested by auth (`quark.auth.sms_requested`) reach an SMS driver: the dev sink (shown at /dev/sms) or a
Twilio-style HTTP gateway. The gateway here is a test double that speaks that protocol over real HTTP (a small
Starlette app on uvicorn: form POST, Basic auth, JSON answers) — no real gateway can run here. Failures retry
with back-off, then dead-letter, as for mail; the code is never logged."""

from __future__ import annotations

import base64
import logging
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from mailer_testkit import dead_letters, publish, start_mailer
from sqlalchemy import select
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from quark_mailer.models import SentSms
from quark_sdk.embedded import free_port
from quark_sdk.events import CloudEvent
from quark_sdk.testing import QuarkTestEnv, ThreadedServer, eventually

CODE = "493817"
PHONE = "+447911123456"
ACCOUNT, AUTH_TOKEN = "AC0123456789", "gateway-auth-token"


def sms_requested(kind: str = "verify_phone", phone: str = PHONE, code: str = CODE) -> CloudEvent:
    """The envelope auth publishes (quark_auth.schemas.SmsRequested), built by hand."""
    payload = {"user_id": str(uuid.uuid4()), "phone": phone, "kind": kind, "code": code,
               "expires_at": (datetime.now(UTC) + timedelta(minutes=5)).isoformat(), "username": "alice"}
    return CloudEvent(id=str(uuid.uuid4()), source="quark/auth", type="quark.auth.sms_requested",
                      time=datetime.now(UTC), subject=payload["user_id"], data=payload)


@dataclass
class Gateway:
    """A Twilio-style Messages endpoint: answers `answers` in order (then the last forever)."""

    answers: list[tuple[int, dict[str, Any]]]
    port: int = field(default_factory=free_port)
    received: list[dict[str, str]] = field(default_factory=list)
    calls: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/2010-04-01/Accounts/{ACCOUNT}/Messages.json"

    async def messages(self, request: Request) -> Response:
        expected = "Basic " + base64.b64encode(f"{ACCOUNT}:{AUTH_TOKEN}".encode()).decode()
        if request.headers.get("authorization") != expected:
            return JSONResponse({"code": 20003, "message": "Authenticate"}, status_code=401)
        if not request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
            return JSONResponse({"code": 400, "message": "form expected"}, status_code=400)
        status, body = self.answers[min(self.calls, len(self.answers) - 1)]
        self.calls += 1
        if status < 300:
            self.received.append({k: str(v) for k, v in (await request.form()).items()})
        return JSONResponse(body, status_code=status)

    def __enter__(self) -> Gateway:
        app = Starlette(routes=[Route(f"/2010-04-01/Accounts/{ACCOUNT}/Messages.json", self.messages,
                                      methods=["POST"])])
        self.server = ThreadedServer(app, self.port, what="the SMS gateway double")
        self.server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.stop()


def http_driver(gateway: Gateway) -> dict[str, Any]:
    return {"sms_driver": "http", "sms_http_url": gateway.url, "sms_http_username": ACCOUNT,
            "sms_http_password": AUTH_TOKEN, "sms_sender": "+15005550006"}


async def sent_rows(svc: Any) -> list[SentSms]:
    async with svc.ctx.database().session() as session:
        return list((await session.execute(select(SentSms))).scalars())


async def test_dev_sink_keeps_the_sms_and_shows_it_at_dev_sms(quark: QuarkTestEnv, tmp_path: Path) -> None:
    svc = await start_mailer(quark, smtp_port=free_port(), data_dir=tmp_path / "data")
    event = sms_requested()
    await publish(quark, event)
    (row,) = await eventually(lambda: sent_rows(svc), what="the sent_sms row")
    assert row.event_id == event.id and row.recipient == PHONE and row.kind == "verify_phone"
    page = await svc.client.get("/dev/sms")
    assert page.status_code == 200 and PHONE in page.text and CODE in page.text
    assert "expires in 5 min" in page.text
    assert 'href="/dev/sms"' in (await svc.client.get("/dev/mail")).text


async def test_http_gateway_gets_the_templated_form_with_basic_auth(quark: QuarkTestEnv, tmp_path: Path) -> None:
    with Gateway([(201, {"sid": "SM1234567890", "status": "queued"})]) as gateway:
        svc = await start_mailer(quark, smtp_port=free_port(), data_dir=tmp_path, **http_driver(gateway))
        await publish(quark, sms_requested("login_code"))
        (row,) = await eventually(lambda: sent_rows(svc), what="the sent_sms row")
    assert row.message_id == "SM1234567890"
    [form] = gateway.received
    assert form["To"] == PHONE and form["From"] == "+15005550006"
    assert CODE in form["Body"] and "sign-in code" in form["Body"]


async def test_a_gateway_answering_503_is_retried_until_it_accepts(quark: QuarkTestEnv, tmp_path: Path) -> None:
    answers = [(503, {"message": "busy"}), (503, {"message": "busy"}), (201, {"sid": "SM2"})]
    with Gateway(answers) as gateway:
        svc = await start_mailer(quark, smtp_port=free_port(), data_dir=tmp_path, max_attempts=5,
                                 **http_driver(gateway))
        await publish(quark, sms_requested())
        (row,) = await eventually(lambda: sent_rows(svc), what="the SMS delivered")
    assert gateway.calls == 3 and row.message_id == "SM2"


async def test_a_refused_number_dead_letters_at_once_and_the_code_is_never_logged(
        quark: QuarkTestEnv, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with Gateway([(400, {"code": 21211, "message": "The 'To' number is not a valid phone number."})]) as gateway:
        svc = await start_mailer(quark, smtp_port=free_port(), data_dir=tmp_path, env="prod",
                                 **http_driver(gateway))
        await publish(quark, sms_requested())
        (dl,) = await eventually(lambda: dead_letters(svc), what="the SMS dead-lettered")
    assert gateway.calls == 1
    assert dl.headers["Quark-Consumer"] == "mailer-sms" and "not a valid phone number" in dl.headers["Quark-Error"]
    assert caplog.records and all(CODE not in r.getMessage() for r in caplog.records)


async def test_production_without_a_driver_dead_letters_and_has_no_dev_sms(quark: QuarkTestEnv,
                                                                           tmp_path: Path) -> None:
    svc = await start_mailer(quark, smtp_port=free_port(), data_dir=tmp_path, env="prod")
    await publish(quark, sms_requested())
    (dl,) = await eventually(lambda: dead_letters(svc), what="the SMS dead-lettered")
    assert "no SMS driver" in dl.headers["Quark-Error"]
    assert (await svc.client.get("/dev/sms")).status_code == 404
    assert not (tmp_path / "sms").exists()


async def test_a_bad_payload_is_dead_lettered(quark: QuarkTestEnv, tmp_path: Path) -> None:
    svc = await start_mailer(quark, smtp_port=free_port(), data_dir=tmp_path)
    await publish(quark, sms_requested(phone="0044 not e164"))
    await publish(quark, sms_requested(kind="lottery_win"))
    assert len(await eventually(lambda: _at_least(svc, 2), what="two dead letters")) == 2
    assert await sent_rows(svc) == []


async def _at_least(svc: Any, n: int) -> list[Any] | None:
    letters = await dead_letters(svc)
    return letters if len(letters) >= n else None
