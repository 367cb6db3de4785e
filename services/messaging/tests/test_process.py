"""The service runs as its own process (`quark serve`), as in the fleet, and its WebSocket refuses strangers."""

import json

import httpx
import pytest
import websockets

from quark_messaging.app import module
from quark_sdk.testing import QuarkTestEnv


async def test_serves_as_its_own_process(quark: QuarkTestEnv) -> None:
    proc = await quark.spawn(module, "quark_messaging.app:module", allowed_origins=["https://app.example"])
    async with httpx.AsyncClient(base_url=proc.url) as client:
        ready = await client.get("/health/ready")
        assert ready.status_code == 200, ready.text
        assert ready.json()["checks"] == {"database": "ok", "redis": "ok", "nats": "ok"}
        anonymous = await client.get("/api/v1/chats")
        assert anonymous.status_code == 401
        assert anonymous.headers["content-type"] == "application/problem+json"
    url = f"ws://127.0.0.1:{proc.port}/api/v1/messages/ws"
    with pytest.raises(websockets.InvalidStatus) as refused:
        await websockets.connect(url, additional_headers={"Origin": "https://evil.example"})
    assert refused.value.response.status_code == 403
    async with websockets.connect(url, additional_headers={"Origin": "https://app.example"}) as ws:
        await ws.send(json.dumps({"type": "auth", "token": "garbage"}))
        with pytest.raises(websockets.ConnectionClosed):
            await ws.recv()
        assert ws.close_code == 1008
