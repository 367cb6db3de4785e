"""Helpers for the mailer's tests: publish what auth publishes, run scripted SMTP servers, read the DLQ."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller

from quark_mailer.app import module
from quark_sdk.devmail import DevMailSink
from quark_sdk.embedded import free_port
from quark_sdk.events import CloudEvent, EventBus, dead_letter_stream
from quark_sdk.testing import QuarkTestEnv, RunningModule, read_stream

TOKEN = "tok-" + "s3cr3t" * 8


def email_requested(*, kind: str = "verify_email", email: str = "alice@example.com", token: str = TOKEN,
                    link: str | None = "default", **data: Any) -> CloudEvent:
    """The envelope auth publishes (quark_auth.schemas.EmailRequested), built by hand: no import of auth."""
    payload: dict[str, Any] = {
        "user_id": str(uuid.uuid4()), "email": email, "kind": kind, "token": token,
        "expires_at": (datetime.now(UTC) + timedelta(hours=48)).isoformat(), "username": "alice", **data,
    }
    if link == "default":
        payload["link"] = f"http://station.test/verify-email?token={token}"
    elif link is not None:
        payload["link"] = link
    return CloudEvent(id=str(uuid.uuid4()), source="quark/auth", type="quark.auth.email_requested",
                      time=datetime.now(UTC), subject=payload["user_id"], data=payload)


async def publish(quark: QuarkTestEnv, event: CloudEvent) -> None:
    bus = EventBus(quark.servers.nats_url, service="auth", namespace=quark.namespace)
    await bus.connect()
    try:
        await bus.publish(event)
    finally:
        await bus.close()


async def dead_letters(svc: RunningModule) -> list[Any]:
    bus = svc.ctx.bus
    assert bus is not None
    return await read_stream(bus.js, dead_letter_stream(bus.namespace))


class ScriptedHandler:
    """An SMTP server's DATA answers, in order (then the last one forever): "250 ...", "451 ...", "550 ..."."""

    def __init__(self, answers: list[str]) -> None:
        self.answers = answers
        self.calls = 0
        self.accepted: list[bytes] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        answer = self.answers[min(self.calls, len(self.answers) - 1)]
        self.calls += 1
        if answer.startswith("250"):
            self.accepted.append(envelope.original_content or envelope.content)
        return answer


@dataclass
class ScriptedSmtp:
    answers: list[str]
    port: int = 0
    handler: ScriptedHandler = field(init=False)
    controller: Any = None

    def __enter__(self) -> ScriptedSmtp:
        self.handler = ScriptedHandler(self.answers)
        self.port = free_port()
        self.controller = Controller(self.handler, hostname="127.0.0.1", port=self.port, ready_timeout=10)
        self.controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.controller.stop()


async def start_mailer(quark: QuarkTestEnv, *, smtp_port: int, data_dir: Path, **overrides: Any) -> RunningModule:
    settings: dict[str, Any] = {"smtp_host": "127.0.0.1", "smtp_port": smtp_port, "data_dir": data_dir,
                                "smtp_timeout": 5, "max_attempts": 3, "retry_backoff": (0.05, 0.1), **overrides}
    return await quark.start(module, **settings)


def sink(tmp_path: Path) -> DevMailSink:
    return DevMailSink(tmp_path / "data" / "mail").start()
