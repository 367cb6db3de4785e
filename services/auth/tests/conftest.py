"""Fixtures for the auth service's tests: a running auth module on real PostgreSQL, Valkey and NATS."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from auth_testkit import FAST, Auth

from quark_auth.app import module
from quark_sdk.testing import QuarkTestEnv


@pytest.fixture
def start_auth(quark: QuarkTestEnv, tmp_path: Path) -> Callable[..., Any]:
    """`await start_auth(**settings)`: a fresh auth service; keys in this test's own secret store."""

    async def start(**overrides: Any) -> Auth:
        settings = {**FAST, "data_dir": tmp_path / "data", **overrides}
        svc = await quark.start(module, **settings)
        return Auth(svc=svc, quark=quark)

    return start


@pytest.fixture
async def auth(start_auth: Callable[..., Any]) -> Auth:
    result: Auth = await start_auth()
    return result
