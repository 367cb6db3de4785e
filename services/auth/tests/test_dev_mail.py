"""The development mail log: links (live tokens) are logged only with QUARK_ENV=dev, and a dev instance says so
at start-up with a warning."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pytest
from auth_testkit import API, Auth


async def test_dev_logs_links_and_warns_at_startup(start_auth: Callable[..., Any],
                                                   caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="quark.auth")
    auth: Auth = await start_auth(env="dev")
    assert any(r.levelno == logging.WARNING and "QUARK_ENV=dev" in r.getMessage()
               for r in caplog.records if r.name == "quark.auth")
    await auth.register("alice")
    token = (await auth.emails("verify_email"))[0]["token"]
    assert any(token in r.getMessage() for r in caplog.records if r.name == "quark.auth.mail")


@pytest.mark.parametrize("env", ["test", "prod"])
async def test_other_envs_neither_log_links_nor_warn(start_auth: Callable[..., Any], caplog: pytest.LogCaptureFixture,
                                                     env: str) -> None:
    caplog.set_level(logging.DEBUG, logger="quark.auth")
    extra: dict[str, Any] = {"bcrypt_rounds": 12} if env == "prod" else {}
    auth: Auth = await start_auth(env=env, **extra)
    resp = await auth.client.post(f"{API}/password-reset/request", json={"email": "nobody@example.com"})
    assert resp.status_code == 202
    if env == "test":
        await auth.register("alice")
        token = (await auth.emails("verify_email"))[0]["token"]
        assert not any(token in r.getMessage() for r in caplog.records)
    assert not any("QUARK_ENV=dev" in r.getMessage() for r in caplog.records)
    assert not [r for r in caplog.records if r.name == "quark.auth.mail"]
