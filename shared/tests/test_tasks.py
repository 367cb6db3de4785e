"""Stopping background tasks for certain: `cancel_and_wait` and `wait_event`."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from quark_sdk.tasks import cancel_and_wait, wait_event


async def test_wait_event_reports_set_or_timeout() -> None:
    event = asyncio.Event()
    assert await wait_event(event, 0.01) is False
    asyncio.get_running_loop().call_later(0.01, event.set)
    assert await wait_event(event, 5) is True
    assert await wait_event(event, 0) is True  # already set: no wait


async def test_wait_event_never_swallows_a_cancellation_racing_the_wake() -> None:
    """The event is set and the waiter cancelled in the same loop iteration: the waiter must end
    cancelled. (`asyncio.wait_for` on 3.11 can return normally here, and a loop around it runs on.)"""
    event = asyncio.Event()
    rounds = 0

    async def background_loop() -> None:
        nonlocal rounds
        while True:
            event.clear()
            await wait_event(event, 10)
            rounds += 1

    task = asyncio.create_task(background_loop())
    for _ in range(3):
        await asyncio.sleep(0)
    event.set()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert rounds == 0


async def test_cancel_and_wait_re_cancels_a_task_that_swallows_once() -> None:
    stopped = asyncio.Event()

    async def stubborn() -> None:
        with contextlib.suppress(asyncio.CancelledError):  # swallowed once, as buggy library code does
            await asyncio.Event().wait()  # until cancelled
        try:
            await asyncio.Event().wait()  # until cancelled
        finally:
            stopped.set()

    task = asyncio.create_task(stubborn())
    await asyncio.sleep(0)
    await cancel_and_wait(task, timeout=5)
    assert task.done() and stopped.is_set()
