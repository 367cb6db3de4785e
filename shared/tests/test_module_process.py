"""A module in its own OS process (`quark serve`), as the fleet runs it: crash and restart lose nothing."""

from __future__ import annotations

from pathlib import Path

import httpx

from quark_sdk.testing import QuarkTestEnv, eventually
from sample.module import module

HERE = str(Path(__file__).parent)


async def test_sigkilled_module_restarts_and_delivers_committed_events(quark: QuarkTestEnv) -> None:
    proc = await quark.spawn(module, "sample.module:module", pythonpath=[HERE])
    async with httpx.AsyncClient(base_url=proc.url) as client:
        first = (await client.post("/api/v1/sample/notes", params={"text": "before crash"})).json()["event_id"]

        async def effects() -> dict[str, int]:
            return (await client.get("/api/v1/sample/effects")).json()

        assert await eventually(effects) == {first: 1}
        proc.kill()
        proc.start()
        second = (await client.post("/api/v1/sample/notes", params={"text": "after restart"})).json()["event_id"]

        async def both() -> dict[str, int] | None:
            got = await effects()
            return got if len(got) == 2 else None

        assert await eventually(both, timeout=30) == {first: 1, second: 1}
        ready = await client.get("/health/ready")
        assert ready.status_code == 200, ready.text
        assert ready.json()["checks"] == {"database": "ok", "redis": "ok", "nats": "ok"}
