"""The serving process's end of the AI worker processes (cpu_worker.py is the other end).

`CPUWorkers` runs `cpu_workers` worker processes for one running AI module and stops them when the module
stops. Each worker has a pipe and a thread of this process that sends one request and waits for its answer,
so the event loop only awaits. The recommendation model lives in worker 0 (it is stateful: fitted per corpus
version); moderation and tag keywords go to whichever worker has the fewest requests queued, worker 0 last,
so a refit there does not hold them up when there are two or more.

A worker that dies (killed, out of memory) fails the request it was sent — an event handler's failure fails
its batch, which the consumer retries — and the next request to its slot starts a fresh one. The model of a
fresh worker is empty: `corpus()` says so (the worker's generation changed) and the caller refits.

Workers are forked from multiprocessing's fork server, which has imported scikit-learn and loaded the
classifier once (`set_forkserver_preload`): a worker starts in milliseconds instead of seconds. The fork
server holds no model state and exits with this process.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from multiprocessing.connection import Connection
from multiprocessing.context import ForkServerContext, SpawnContext
from multiprocessing.process import BaseProcess
from typing import Any

from quark_ai import cpu_worker
from quark_ai.audience import Audience
from quark_ai.classifier import Raw
from quark_ai.cpu_worker import CorpusInfo, WorkerConfig
from quark_ai.recommend import Doc, Scored

log = logging.getLogger("quark.ai.cpu")

START_TIMEOUT = 120.0  # a first start imports scikit-learn and loads the classifier (seconds on a busy machine)
STOP_TIMEOUT = 5.0

_context_lock = threading.Lock()
_context: ForkServerContext | SpawnContext | None = None


def mp_context() -> ForkServerContext | SpawnContext:
    """The fork server (preloading the worker's imports) where there is one, otherwise spawn."""
    global _context
    with _context_lock:
        if _context is None:
            if "forkserver" in multiprocessing.get_all_start_methods():
                _context = multiprocessing.get_context("forkserver")
                _context.set_forkserver_preload(["quark_ai.cpu_worker"])  # no effect once the server runs
            else:  # pragma: no cover - not Linux or macOS
                _context = multiprocessing.get_context("spawn")
        return _context


class WorkerDied(RuntimeError):
    """The worker process died (or was stopped) before answering: retry; the next request starts a fresh one."""


class _Slot:
    """One worker process, its pipe, and the thread of this process that talks to it (one request at a time)."""

    def __init__(self, index: int, config: WorkerConfig) -> None:
        self.index = index
        self.config = config
        self.thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"quark-ai-cpu-{index}")
        self.queued = 0  # requests sent or waiting for this slot's thread (touched by the event loop only)
        self.generation = 0  # incremented at each start: a changed generation means a fresh (empty) worker
        self.process: BaseProcess | None = None
        self.conn: Connection | None = None
        self.closed = False
        self._life = threading.Lock()  # start / discard / stop

    # -- in the slot's thread

    def ensure(self) -> int:
        with self._life:
            if self.closed:
                raise WorkerDied("the AI workers are stopped")
            if self.process is None:
                self._start()
            return self.generation

    def _start(self) -> None:
        ctx = mp_context()
        parent, child = ctx.Pipe()
        process = ctx.Process(target=cpu_worker.main, args=(child, self.config), name=f"quark-ai-cpu-{self.index}",
                              daemon=True)
        process.start()
        child.close()
        try:
            if not parent.poll(START_TIMEOUT):
                raise WorkerDied(f"AI worker {self.index} did not start within {START_TIMEOUT:.0f} s")
            ok, value = parent.recv()
        except (EOFError, OSError) as exc:
            self._reap(process, parent)
            raise WorkerDied(f"AI worker {self.index} died while starting") from exc
        except WorkerDied:
            self._reap(process, parent)
            raise
        if not ok:
            self._reap(process, parent)
            raise value
        self.process, self.conn = process, parent
        self.generation += 1
        log.info("AI worker %d started (pid %s)", self.index, value)

    def roundtrip(self, op: str, args: tuple[Any, ...]) -> tuple[Any, int]:
        """Send one request and wait for its answer: (answer, generation of the worker that gave it)."""
        generation = self.ensure()
        conn = self.conn
        assert conn is not None
        try:
            conn.send((op, args))
            ok, value = conn.recv()
        except (EOFError, OSError) as exc:
            self.discard()
            raise WorkerDied(f"AI worker {self.index} died during {op!r}; a fresh one starts at the next call") \
                from exc
        if not ok:
            raise value
        return value, generation

    def discard(self) -> None:
        with self._life:
            process, conn, self.process, self.conn = self.process, self.conn, None, None
            if process is not None and conn is not None:
                self._reap(process, conn)

    @staticmethod
    def _reap(process: BaseProcess, conn: Connection) -> None:
        conn.close()
        if process.is_alive():
            process.terminate()
            process.join(STOP_TIMEOUT)
            if process.is_alive():  # pragma: no cover - SIGTERM is not caught by the worker
                process.kill()
        process.join()

    def stop(self) -> None:
        """For good: the process is terminated (a request it was running fails with WorkerDied)."""
        with self._life:
            self.closed = True
            process, conn, self.process, self.conn = self.process, self.conn, None, None
        if process is not None and conn is not None:
            self._reap(process, conn)
        self.thread.shutdown(wait=False)

    def pid(self) -> int | None:
        process = self.process
        return process.pid if process is not None else None


@dataclass(frozen=True)
class Corpus:
    """What the model worker holds, as this process knows it."""

    version: tuple[Any, ...]
    size: int  # posts in the model
    extendable: bool  # new posts can be placed with its vocabulary
    fitted_at: float  # time.monotonic() of the last full fit
    generation: int  # of the worker that holds it


class CPUWorkers:
    """The worker processes of one running AI module."""

    def __init__(self, count: int, config: WorkerConfig) -> None:
        self._slots = [_Slot(i, config) for i in range(max(1, count))]
        self._corpus: Corpus | None = None
        self.refit_lock = asyncio.Lock()  # one refit at a time (a second caller finds it done)

    @property
    def count(self) -> int:
        return len(self._slots)

    async def start(self) -> None:
        """Start every worker now (the module's startup), not inside the first event's transaction."""
        loop = asyncio.get_running_loop()
        await asyncio.gather(*(loop.run_in_executor(s.thread, s.ensure) for s in self._slots))

    async def aclose(self) -> None:
        await asyncio.gather(*(asyncio.to_thread(s.stop) for s in self._slots))

    def pids(self) -> list[int | None]:
        """The workers' process ids (None: not started, or died and not restarted yet)."""
        return [s.pid() for s in self._slots]

    async def _call(self, slot: _Slot, op: str, *args: Any) -> tuple[Any, int]:
        if slot.closed:
            raise WorkerDied("the AI workers are stopped")
        slot.queued += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(slot.thread, slot.roundtrip, op, args)
        finally:
            slot.queued -= 1

    def _any(self) -> _Slot:
        """The least busy worker; the model's worker (0) last, as it may be refitting."""
        return min(reversed(self._slots), key=lambda s: s.queued)

    # -- stateless work, on any worker

    async def moderate(self, text: str) -> Raw:
        """The classifier and rule matches for `text`; the caller's `Moderator.verdict` applies its thresholds."""
        raw: Raw = (await self._call(self._any(), "moderate", text))[0]
        return raw

    async def keywords(self, text: str, *, title: str, limit: int, exclude: frozenset[str]) -> list[str]:
        found: list[str] = (await self._call(self._any(), "keywords", text, title, limit, exclude))[0]
        return found

    # -- the recommendation model, in worker 0

    def corpus(self) -> Corpus | None:
        """The model worker 0 holds; None when it holds none (never fitted, or a fresh worker since)."""
        c = self._corpus
        return c if c is not None and c.generation == self._slots[0].generation else None

    async def fit(self, version: tuple[Any, ...], docs: Sequence[Doc]) -> Corpus:
        started = time.monotonic()
        info, generation = await self._call(self._slots[0], "fit", version, list(docs))
        return self._keep(info, started, generation)

    async def extend(self, version: tuple[Any, ...], docs: Sequence[Doc]) -> Corpus:
        """Place new posts with the fitted vocabulary (no refit); the model must be the one `corpus()` says."""
        before = self.corpus()
        if before is None:
            raise WorkerDied("the model's worker was replaced: refit")
        info, generation = await self._call(self._slots[0], "extend", version, list(docs))
        return self._keep(info, before.fitted_at, generation)

    def _keep(self, info: CorpusInfo, fitted_at: float, generation: int) -> Corpus:
        self._corpus = Corpus(info.version, info.size, info.extendable, fitted_at, generation)
        return self._corpus

    async def rank(
        self, corpus: Corpus, *, audience: Audience, liked: dict[str, float], now: datetime,
        follow_boost: float, half_life_days: float, limit: int,
    ) -> list[Scored] | None:
        """None: the worker holds another model now (refitted since, or replaced): take `corpus()` again."""
        ranked: list[Scored] | None = (await self._call(self._slots[0], "rank", corpus.version, audience, liked,
                                                        now, follow_boost, half_life_days, limit))[0]
        return ranked

    async def related(
        self, corpus: Corpus, post_id: str, text: str, *, audience: Audience, limit: int
    ) -> list[tuple[str, float]] | None:
        found: list[tuple[str, float]] | None = (
            await self._call(self._slots[0], "related", corpus.version, post_id, text, audience, limit))[0]
        return found
