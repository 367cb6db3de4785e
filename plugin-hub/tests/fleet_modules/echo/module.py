"""A tiny module with no backing servers: only docks, answers /api/v1/echo/{text}."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from pydantic_settings import SettingsConfigDict

from quark_sdk.app import QuarkModule
from quark_sdk.config import ServiceSettings


class EchoSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="QUARK_ECHO_", extra="ignore")


router = APIRouter(prefix="/api/v1/echo")


@router.get("/{text}")
async def echo(text: str) -> dict[str, str]:
    return {"echo": text}


module = QuarkModule(name="echo", settings_cls=EchoSettings, root=Path(__file__).parent, routers=[router])
