"""Fixtures for the messaging service's tests: instances on real PostgreSQL, Valkey and NATS."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from messaging_testkit import Cluster

from quark_sdk.testing import QuarkTestEnv


@pytest.fixture
async def cluster(quark: QuarkTestEnv) -> AsyncIterator[Cluster]:
    c = Cluster(quark)
    try:
        yield c
    finally:
        await c.close()
