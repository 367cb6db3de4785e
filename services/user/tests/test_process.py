"""The service runs as its own process (`quark serve`), as in the fleet."""

import httpx

from quark_sdk.testing import QuarkTestEnv
from quark_user.app import module


async def test_serves_as_its_own_process(quark: QuarkTestEnv) -> None:
    proc = await quark.spawn(module, "quark_user.app:module")
    async with httpx.AsyncClient(base_url=proc.url) as client:
        ready = await client.get("/health/ready")
        assert ready.status_code == 200, ready.text
        assert ready.json()["checks"] == {"database": "ok", "redis": "ok", "nats": "ok"}
        missing = await client.get("/api/v1/users/nobody")
        assert missing.status_code == 404
        assert missing.headers["content-type"] == "application/problem+json"
