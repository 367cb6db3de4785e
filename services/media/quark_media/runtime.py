"""What a running media instance holds beside the SDK context: its storage driver and processing pool.

Built once per running instance by the SDK (`QuarkModule(runtime=build_runtime)`) and handed to
routes (`Runtime`) and event handlers (their first argument), so several instances in one process
(tests, the embedded station) never share a storage root.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import threading
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from quark_media.imaging import Limits, VariantSpec
from quark_media.settings import MediaSettings
from quark_sdk.app import ServiceContext
from quark_sdk.db import Database
from quark_sdk.ratelimit import RateLimiter
from quark_sdk.storage import ObjectStorage, storage_from_url
from quark_sdk.tasks import cancel_and_wait

log = logging.getLogger("quark.media")
T = TypeVar("T")


WORKER_NICENESS = 2
"""Slightly below the API, not far below: at nice 10 the workers got ~10% of a core whenever the service, its
database and the clients were busy, so two workers used a fraction of two cores (bench/media.py, 0.34x Pillow's
throughput). Responsiveness comes from SCHED_BATCH instead: a batch task never preempts a waking request handler."""


def _lower_priority() -> None:
    """Image work yields to request handling on wake-up but still gets (almost) a full share of the cores."""
    with contextlib.suppress(OSError, AttributeError):
        # On Linux a thread id set here lowers only this worker thread (or process).
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), WORKER_NICENESS)
    with contextlib.suppress(OSError, AttributeError):
        os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0))


def _init_worker_process() -> None:
    """Worker process: low priority, and exit when the service process is gone (even if it was SIGKILLed)."""
    _lower_priority()
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(0)

    threading.Thread(target=watch, name="quark-media-parent-watch", daemon=True).start()


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
                pool = ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_init_worker_process)
            else:
                pool = ThreadPoolExecutor(
                    max_workers=workers, thread_name_prefix="quark-media-img", initializer=_lower_priority
                )
            _POOLS[(mode, workers)] = pool
        return pool


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
    # At most this many images are decoded at once: each can hold up to 4 bytes per pixel up to max_pixels.
    slots: asyncio.Semaphore
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

    @property
    def limits(self) -> Limits:
        s = self.settings
        return Limits(max_pixels=s.max_pixels, max_dimension=s.max_dimension)

    @property
    def spec(self) -> VariantSpec:
        s = self.settings
        return VariantSpec(thumb=s.thumb_size, medium=s.medium_size, quality=s.webp_quality, method=s.webp_method)

    async def run_blocking(self, fn: Callable[..., T], *args: Any) -> T:
        """Run CPU-bound image work in the pool, bounded by the decode slots; the event loop stays free."""
        async with self.slots:
            pool = shared_pool(self.mode, self.workers)
            try:
                return await asyncio.get_running_loop().run_in_executor(pool, fn, *args)
            except BrokenProcessPool:
                # A worker died (killed, out of memory): start a fresh pool for the next job, fail this one.
                _discard_pool(pool)
                raise

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
        slots=asyncio.Semaphore(workers),
        limiter=RateLimiter(ctx.cache(), prefix=ctx.key()),
    )
    await rt.ensure_storage()
    return rt
