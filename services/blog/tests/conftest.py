"""Fixtures for the blog service's tests: a running blog module on real PostgreSQL, Valkey and NATS."""

from __future__ import annotations

import pytest
from blog_testkit import Blog

from quark_blog.app import module
from quark_sdk.testing import QuarkTestEnv, eventually


@pytest.fixture
async def blog(quark: QuarkTestEnv) -> Blog:
    svc = await quark.start(module, write_rate_limit=100_000)
    for runner in svc.ctx.consumers:
        await eventually(lambda r=runner: r.ready.is_set(), what="consumer subscribed")
    return Blog(quark, svc)
