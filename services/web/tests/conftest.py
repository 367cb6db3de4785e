"""Fixtures of the web module's tests: a station in-process (auth, user, media, blog, web)."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from quark_sdk.testing import QuarkTestEnv

sys.path.insert(0, str(Path(__file__).parent))

from webkit import Station, start_station


@pytest.fixture
async def station(quark: QuarkTestEnv, tmp_path: Path) -> AsyncIterator[Station]:
    s = await start_station(quark, tmp_path)
    try:
        yield s
    finally:
        await s.close()
