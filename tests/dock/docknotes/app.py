"""A stateless module in two versions (`docknotes.app:module_v1`, `…:module_v2`) for the live-docking tests:
it answers with its version, so a test sees which one served each request (HTTP and WebSocket)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from pydantic_settings import SettingsConfigDict

from quark_sdk.app import QuarkModule
from quark_sdk.config import ServiceSettings

ROOT = Path(__file__).parent


class NotesSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="QUARK_DOCKNOTES_", extra="ignore")


def build(version_dir: str) -> QuarkModule[Any, Any]:
    root = ROOT / version_dir
    router = APIRouter(prefix="/api/v1/docknotes")
    holder: dict[str, str] = {}

    def version() -> str:
        if "v" not in holder:
            holder["v"] = module.manifest().version
        return holder["v"]

    @router.get("")
    async def who() -> dict[str, Any]:
        return {"version": version(), "pid": os.getpid()}

    @router.post("/echo")
    async def echo(body: dict[str, Any]) -> dict[str, Any]:
        return {"version": version(), "echo": body}

    @router.websocket("/ws")
    async def ws(socket: WebSocket) -> None:
        await socket.accept()
        try:
            while True:
                text = await socket.receive_text()
                await socket.send_text(f"{version()}:{text}")
        except WebSocketDisconnect:
            return

    module: QuarkModule[Any, Any] = QuarkModule(name="docknotes", settings_cls=NotesSettings, root=root,
                                                routers=[router])
    return module


module_v1 = build("m1")
module_v2 = build("m2")
