"""Journey tests run against a whole station started like a user starts it: `quark dev` (embedded) and
`quark dev --fleet` (one process per module). One station per mode for the whole module of tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from stationkit import Station


@pytest.fixture(scope="module", params=["embedded", "fleet"])
def station(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Station]:
    s = Station(request.param, tmp_path_factory.mktemp(f"station-{request.param}"))
    s.start()
    try:
        yield s
    finally:
        s.stop()
