"""Fixtures for the AI service's tests: a running AI module on real PostgreSQL, Valkey and NATS."""

from __future__ import annotations

import pytest
from ai_testkit import AI, start_ai

from quark_sdk.testing import QuarkTestEnv


@pytest.fixture
async def ai(quark: QuarkTestEnv) -> AI:
    """The AI module with no provider configured (the local extractive one)."""
    return await start_ai(quark)
