"""Fixtures for the AI service's tests: a running AI module on real PostgreSQL, Valkey and NATS."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from quark_sdk.testing import QuarkTestEnv

# ai_testkit (helpers and the Ollama test double) lives beside the tests.
sys.path.insert(0, str(Path(__file__).parent))

from ai_testkit import AI, start_ai


@pytest.fixture
async def ai(quark: QuarkTestEnv) -> AI:
    """The AI module with no provider configured (the local extractive one)."""
    return await start_ai(quark)
