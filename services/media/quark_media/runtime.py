"""What a running media instance holds beside the SDK context: its storage driver and processing pool.

Built once per running instance by the SDK (`QuarkModule(runtime=build_runtime)`) and handed to
routes (`Runtime`) and event handlers (their first argument), so several instances in one process
(tests, the embedded station) never share a storage root.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import multiprocessing
import os
import threading
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncEngine

from quark_media.imaging import Limits, VariantSpec
from quark_media.settings import MediaSettings
from quark_media.worker import init_worker_process, lower_priority, ready
from quark_sdk.app import ServiceContext
from quark_sdk.db import Database
from quark_sdk.ratelimit import RateLimiter
from quark_sdk.storage import ObjectStorage, storage_from_url
from quark_sdk.tasks import cancel_and_wait

log = logging.getLogger("quark.media")
T = TypeVar("T")


_POOLS: dict[tuple[str, int], Executor] = {}
_POOLS_LOCK = threading.Lock()


def shared_pool(mode: str, workers: int) -> Executor:
    """One pool per (mode, size) per process, shared by every media runtime in it (tests, the embedded station).

    Processes are the default: decoding and encoding then never compete with the event loop for the GIL.
    Workers are spawned (no threads or sockets of the service are inherited), run at low CPU priority and
    exit on their own when the service process dies.
    """
    with _POOLS_LOCK:
        pool = _POOLS.get((mode, workers))
        if pool is None:
            if mode == "process":
                ctx = multiprocessing.get_context("spawn")
                pool = ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=init_worker_process)
            else:
                pool = ThreadPoolExecutor(
                    max_workers=workers, thread_name_prefix="quark-media-img", initializer=lower_priority
                )
            _POOLS[(mode, workers)] = pool
        return pool


async def start_workers(pool: Executor, workers: int) -> None:
    """Start every worker now, not when jobs first overlap.

    A process pool spawns a worker only when a job arrives and none is idle, so the second worker used to be
    started (and import its code) at the moment the second concurrent upload came in, competing with the first
    one's image work. Submitting ``workers`` jobs at once makes the pool spawn them all here, at start-up.
    """
    loop = asyncio.get_running_loop()
    await asyncio.gather(*(loop.run_in_executor(pool, ready) for _ in range(workers)))


class DecodeSlots:
    """At most ``size`` images in the pool at once; a waiting accept-time check is let in before waiting processing.

    Both kinds of job decode an image, so both count against the same bound (memory: up to 4 bytes per pixel up to
    ``max_pixels`` each). But an upload's check (one decode) answers a client that is waiting for its 201, while
    processing (a decode and three encodes, several times longer) only fills in variants: with one FIFO queue a new
    upload's check waited behind every processing job queued before it. Within each kind the order is FIFO.
    """

    def __init__(self, size: int) -> None:
        self._free = size
        self._checks: deque[asyncio.Future[None]] = deque()
        self._processing: deque[asyncio.Future[None]] = deque()

    @contextlib.asynccontextmanager
    async def hold(self, *, check: bool) -> AsyncIterator[None]:
        await self._acquire(check)
        try:
            yield
        finally:
            self._release()

    def waiting(self) -> tuple[int, int]:
        """(checks, processing jobs) waiting for a slot: for tests and diagnostics."""
        return (
            sum(not f.done() for f in self._checks),
            sum(not f.done() for f in self._processing),
        )

    async def _acquire(self, check: bool) -> None:
        if self._free > 0 and self.waiting() == (0, 0):
            self._free -= 1
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        (self._checks if check else self._processing).append(fut)
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                self._release()  # the slot was handed over just as the waiter was cancelled: pass it on
            raise

    def _release(self) -> None:
        for queue in (self._checks, self._processing):
            while queue:
                fut = queue.popleft()
                if not fut.done():  # a cancelled waiter stays queued until it reaches the front; skip it
                    fut.set_result(None)
                    return
        self._free += 1


def _discard_pool(pool: Executor) -> None:
    with _POOLS_LOCK:
        for key, value in list(_POOLS.items()):
            if value is pool:
                del _POOLS[key]
    pool.shutdown(wait=False, cancel_futures=True)


@dataclass
class MediaRuntime:
    ctx: ServiceContext[MediaSettings, MediaRuntime]
    storage: ObjectStorage
    mode: str
    workers: int
    # At most `workers` images are decoded at once: each can hold up to 4 bytes per pixel up to max_pixels.
    slots: DecodeSlots
    limiter: RateLimiter
    tasks: set[asyncio.Task[Any]] = field(default_factory=set)
    wake_recovery: asyncio.Event = field(default_factory=asyncio.Event)
    bucket_ready: bool = False
    _bucket_failed_at: float = -1e9

    @property
    def settings(self) -> MediaSettings:
        return self.ctx.settings

    @property
    def db(self) -> Database:
        return self.ctx.database()

    @functools.cached_property
    def reader(self) -> AsyncEngine:
        """The service's engine (same pool) in autocommit mode: single-statement reads without BEGIN/ROLLBACK."""
        return self.db.read_engine

    @property
    def limits(self) -> Limits:
        s = self.settings
        return Limits(max_pixels=s.max_pixels, max_dimension=s.max_dimension)

    @property
    def spec(self) -> VariantSpec:
        s = self.settings
        return VariantSpec(thumb=s.thumb_size, medium=s.medium_size, quality=s.webp_quality, method=s.webp_method)

    async def run_blocking(self, fn: Callable[..., T], *args: Any, check: bool = False) -> T:
        """Run CPU-bound image work in the pool, bounded by the decode slots; the event loop stays free.

        ``check``: an upload's accept-time check, which a client waits on; it goes before queued processing.
        """
        async with self.slots.hold(check=check):
            pool = shared_pool(self.mode, self.workers)
            try:
                return await asyncio.get_running_loop().run_in_executor(pool, fn, *args)
            except BrokenProcessPool:
                # A worker died (killed, out of memory): start a fresh pool for the next job, fail this one.
                _discard_pool(pool)
                raise

    async def start_workers(self) -> None:
        """Have the whole pool running before the first upload (see :func:`start_workers`).

        A pool that cannot start is not fatal here: the first job finds it broken, fails (retried by processing)
        and a fresh pool is made, as for a worker that dies later.
        """
        pool = shared_pool(self.mode, self.workers)
        try:
            await start_workers(pool, self.workers)
        except BrokenProcessPool:
            log.warning("the media processing pool did not start; a new one is made for the next job")
            _discard_pool(pool)

    def spawn(self, coro: Awaitable[Any], name: str) -> None:
        """Keep a strong reference to a fire-and-forget task until it ends (cancelled at shutdown)."""
        task = asyncio.ensure_future(coro)
        task.set_name(name)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def ensure_storage(self) -> bool:
        """Create the bucket once. Storage down at start must not crash-loop the service: metadata reads
        still work, uploads answer 503, and the recovery job calls this again."""
        loop = asyncio.get_running_loop()
        # After a failure, answer at once for a few seconds instead of making every request wait out the
        # driver's own retries.
        if not self.bucket_ready and loop.time() - self._bucket_failed_at > 5:
            try:
                await asyncio.wait_for(self.storage.ensure_bucket(), 15)
                self.bucket_ready = True
            except Exception as exc:
                self._bucket_failed_at = loop.time()
                log.warning("object storage not ready (%s: %s); will retry", type(exc).__name__, exc)
        return self.bucket_ready

    async def aclose(self) -> None:
        await cancel_and_wait(list(self.tasks))


def storage_for(settings: MediaSettings) -> ObjectStorage:
    url = settings.storage_url or (Path(settings.data_dir).resolve() / "media").as_uri()
    return storage_from_url(url)


async def build_runtime(ctx: ServiceContext[MediaSettings, MediaRuntime]) -> MediaRuntime:
    settings = ctx.settings
    workers = settings.processing_workers or max(1, os.cpu_count() or 1)
    rt = MediaRuntime(
        ctx=ctx,
        storage=storage_for(settings),
        mode=settings.processing_mode,
        workers=workers,
        slots=DecodeSlots(workers),
        limiter=RateLimiter(ctx.cache(), prefix=ctx.key()),
    )
    await rt.start_workers()
    await rt.ensure_storage()
    return rt
