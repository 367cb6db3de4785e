"""Fixtures for the messaging service's tests: instances on real PostgreSQL, Valkey and NATS."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from quark_sdk.testing import QuarkTestEnv

# messaging_testkit (helpers) lives beside the tests.
sys.path.insert(0, str(Path(__file__).parent))

from messaging_testkit import Cluster


@pytest.fixture
async def cluster(quark: QuarkTestEnv) -> AsyncIterator[Cluster]:
    c = Cluster(quark)
    try:
        yield c
    finally:
        await c.close()
