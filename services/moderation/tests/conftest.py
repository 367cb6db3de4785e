"""Fixtures for the moderation module's tests: a running moderation module on real PostgreSQL, Valkey and NATS."""

from __future__ import annotations

import pytest
from moderation_testkit import Moderation

from quark_moderation.app import module
from quark_sdk.testing import QuarkTestEnv, eventually


@pytest.fixture
async def mod(quark: QuarkTestEnv) -> Moderation:
    svc = await quark.start(module)
    for runner in svc.ctx.consumers:
        await eventually(lambda r=runner: r.ready.is_set(), what="consumer subscribed")
    return Moderation(quark, svc)
