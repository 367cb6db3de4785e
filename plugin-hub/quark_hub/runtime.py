"""What a running hub holds besides the SDK's ServiceContext: its store, keys and live-update fan-out."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from quark_hub.registry_store import RegistryStore
from quark_hub.settings import HubSettings
from quark_sdk.app import ServiceContext
from quark_sdk.auth import SigningKeySet
from quark_sdk.db import Database

if TYPE_CHECKING:
    from quark_hub.monitor import Monitor


@dataclass
class Broadcaster:
    """Fans the registry's change channel out to this process's live streams (one Redis subscription)."""

    subscribers: set[asyncio.Event] = field(default_factory=set)

    def subscribe(self) -> asyncio.Event:
        flag = asyncio.Event()
        self.subscribers.add(flag)
        return flag

    def unsubscribe(self, flag: asyncio.Event) -> None:
        self.subscribers.discard(flag)

    def wake_all(self) -> None:
        for flag in self.subscribers:
            flag.set()


@dataclass
class HubRuntime:
    ctx: ServiceContext[HubSettings, HubRuntime]
    settings: HubSettings
    store: RegistryStore
    keys: SigningKeySet
    broadcaster: Broadcaster = field(default_factory=Broadcaster)
    self_instance_id: str | None = None
    monitor: Monitor | None = None  # this process's health monitor, once its job runs

    @property
    def db(self) -> Database:
        return self.ctx.database()

    @property
    def name(self) -> str:
        return self.ctx.name


def stop_if_cancelled() -> None:
    """Raise CancelledError if this task was asked to stop but the request got lost.

    On Python 3.11, `asyncio.wait_for` can swallow a cancellation when the awaited work finishes at
    the same moment, and redis-py wraps every command send in it (so does the SDK's outbox relay).
    A loop that only waits on such calls would then run forever and hang shutdown; every loop of
    the hub checks this once per turn.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
