"""Fixtures of the web module's tests: a station in-process (auth, user, media, blog, web)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from webkit import Station, start_station

from quark_sdk.testing import QuarkTestEnv


@pytest.fixture
async def station(quark: QuarkTestEnv, tmp_path: Path) -> AsyncIterator[Station]:
    s = await start_station(quark, tmp_path)
    try:
        yield s
    finally:
        await s.close()
