"""Stopping background tasks for certain.

On Python 3.11 a cancellation can be swallowed by `asyncio.wait_for` or by library code that catches
`CancelledError`; a plain `task.cancel(); await task` then waits forever and shutdown hangs. Every
long-lived task of the SDK is stopped through `cancel_and_wait`, which re-cancels until the task ends
and gives up (with a warning) after a deadline instead of hanging the process.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

log = logging.getLogger("quark.tasks")


async def cancel_and_wait(tasks: asyncio.Task[object] | Iterable[asyncio.Task[object]], *,
                          timeout: float = 5.0) -> None:
    pending = {tasks} if isinstance(tasks, asyncio.Task) else set(tasks)
    pending = {t for t in pending if not t.done()}
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while pending:
        for task in pending:
            task.cancel()
        remaining = deadline - loop.time()
        if remaining <= 0:
            log.warning("tasks did not stop in %.1fs: %s", timeout, sorted(t.get_name() for t in pending))
            return
        # asyncio.wait never raises on the tasks' outcomes; a task that swallowed the cancel is cancelled again.
        _, pending = await asyncio.wait(pending, timeout=min(0.5, remaining))


async def wait_event(event: asyncio.Event, timeout: float) -> bool:
    """Wait at most `timeout` seconds for `event`; True if it is set.

    For background loops that sleep until woken. `asyncio.wait_for(event.wait(), t)` on Python 3.11
    swallows the waiting task's cancellation when the event is set at the same moment — the loop then
    goes round again and nothing can stop it (asyncio's final task cancellation hangs)."""
    if event.is_set():
        return True
    try:
        async with asyncio.timeout(timeout):
            await event.wait()
    except TimeoutError:
        return event.is_set()
    return True
