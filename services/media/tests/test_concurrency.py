"""Uploads in flight together (issue #21 part 2): checks go before queued processing; workers start with the service.

Behaviour only, no timing: who gets a decode slot first, how many workers exist after start-up.
"""

import asyncio
import contextlib
from pathlib import Path

from media_testkit import jpeg, start

from quark_media.runtime import DecodeSlots, shared_pool
from quark_sdk.testing import QuarkTestEnv, eventually


async def test_a_waiting_check_gets_the_next_slot_before_waiting_processing() -> None:
    slots = DecodeSlots(1)
    order: list[str] = []
    release = asyncio.Event()

    async def job(name: str, *, check: bool) -> None:
        async with slots.hold(check=check):
            order.append(name)
            await release.wait()

    first = asyncio.create_task(job("processing-1", check=False))
    await eventually(lambda: order == ["processing-1"], what="first job running")
    queued = asyncio.create_task(job("processing-2", check=False))
    await eventually(lambda: slots.waiting() == (0, 1), what="processing queued")
    check = asyncio.create_task(job("check", check=True))  # arrives after processing-2 ...
    await eventually(lambda: slots.waiting() == (1, 1), what="check queued")
    release.set()
    await asyncio.gather(first, queued, check)
    assert order == ["processing-1", "check", "processing-2"]  # ... and is let in before it


async def hold_until(slots: DecodeSlots, done: asyncio.Event, *, check: bool) -> None:
    async with slots.hold(check=check):
        await done.wait()


async def test_a_cancelled_waiter_does_not_keep_a_slot() -> None:
    slots = DecodeSlots(1)
    async with slots.hold(check=False):
        waiter = asyncio.create_task(hold_until(slots, asyncio.Event(), check=True))
        await eventually(lambda: slots.waiting() == (1, 0), what="check queued")
        waiter.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await waiter
    # The slot came back: a new job gets it at once.
    async with slots.hold(check=False):
        assert slots.waiting() == (0, 0)


async def test_an_upload_is_checked_while_processing_jobs_wait(quark: QuarkTestEnv, tmp_path: Path) -> None:
    """Both slots busy, a processing job queued: the next upload's check goes first and the client gets its 201."""
    h = await start(quark, tmp_path)
    alice = h.account()
    async with contextlib.AsyncExitStack() as busy:
        for _ in range(h.rt.workers):
            await busy.enter_async_context(h.rt.slots.hold(check=False))
        done = asyncio.Event()
        queued = asyncio.create_task(hold_until(h.rt.slots, done, check=False))
        await eventually(lambda: h.rt.slots.waiting() == (0, 1), what="processing queued")
        upload = asyncio.create_task(h.upload(alice, jpeg(64, 48)))
        await eventually(lambda: h.rt.slots.waiting() == (1, 1), what="the upload's check queued")
        await busy.aclose()  # frees both slots: one to the check, one to the queued processing
        resp = await upload
        assert resp.status_code == 201, resp.text  # answered while `queued` still holds the other slot
        assert not queued.done()
        done.set()
        await queued
    media = await h.settled(resp.json()["id"], alice)
    assert media["status"] == "ready"


async def test_every_worker_is_running_once_the_service_has_started(quark: QuarkTestEnv, tmp_path: Path) -> None:
    """Not spawned when two uploads first overlap (then the second worker's start-up competed with image work)."""
    h = await start(quark, tmp_path, processing_workers=2)
    pool = shared_pool(h.rt.mode, h.rt.workers)
    assert h.rt.mode == "process"
    assert len(pool._processes) == 2  # type: ignore[attr-defined]
