"""The AI worker process: the CPU-bound work, out of the serving process (docs/ai.md, "Worker processes").

scikit-learn and the classifier hold the GIL for milliseconds to seconds; in a thread of the serving process
that stalled the event loop of every module of the embedded station (docs/performance.md, issue #21). Here
they run in a process of their own, which answers one request at a time over a pipe (cpu.py is the other
end). Requests and answers are plain data: texts, ids, numbers. The worker holds what is costly to rebuild:
the classifier, the moderation rules compiled once from the settings it was started with, and (in the worker
that owns it) the recommendation model of the corpus version it was last sent. What depends on settings an
admin can change (thresholds, rule scores) is applied by the serving process to the raw scores sent back.

This module is preloaded by the fork server (cpu.py), so a new worker starts in milliseconds with
scikit-learn and the classifier already loaded.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from datetime import datetime
from multiprocessing.connection import Connection
from typing import Any, NamedTuple

from quark_ai import textutil
from quark_ai.audience import Audience
from quark_ai.classifier import Moderator, Raw, warm_up
from quark_ai.recommend import Doc, Recommender, Scored
from quark_ai.settings import ModerationRule


class WorkerConfig(NamedTuple):
    """What a worker is started with (from the settings, which do not change while the module runs)."""

    max_chars: int  # moderation_max_chars
    rules: tuple[dict[str, Any], ...]  # moderation_rules as dicts; their scores are applied by the caller


class CorpusInfo(NamedTuple):
    """What the model holds after a fit or an extension."""

    version: tuple[Any, ...]
    size: int
    extendable: bool  # a vocabulary was fitted (not an empty corpus, nor only stop words)


class Worker:
    """The state of one worker process, and the operations a caller may ask for (`OPS`)."""

    def __init__(self, config: WorkerConfig) -> None:
        rules = [ModerationRule(**r) for r in config.rules]
        self.moderator = Moderator(1.0, rules, config.max_chars)  # threshold unused here: only `raw`
        self.recommender = Recommender()

    def moderate(self, text: str) -> Raw:
        return self.moderator.raw(text)

    def keywords(self, text: str, title: str, limit: int, exclude: frozenset[str]) -> list[str]:
        return textutil.keywords(text, title=title, limit=limit, exclude=exclude)

    def fit(self, version: tuple[Any, ...], docs: list[Doc]) -> CorpusInfo:
        return self._info(self.recommender.fitted(version, docs))

    def extend(self, version: tuple[Any, ...], docs: list[Doc]) -> CorpusInfo:
        if self.recommender.current(float("inf")) is None:
            raise RuntimeError("no fitted model to extend")
        return self._info(self.recommender.extend(version, docs))

    def rank(
        self, version: tuple[Any, ...], audience: Audience, liked: dict[str, float], now: datetime,
        follow_boost: float, half_life_days: float, limit: int,
    ) -> list[Scored] | None:
        """None: this worker holds another version (refitted since, or a fresh worker): ask again."""
        fitted = self.recommender._fitted
        if fitted is None or fitted.version != version:
            return None
        return Recommender.rank(fitted, audience=audience, liked=liked, now=now, follow_boost=follow_boost,
                                half_life_days=half_life_days, limit=limit)

    def related(
        self, version: tuple[Any, ...], post_id: str, text: str, audience: Audience, limit: int
    ) -> list[tuple[str, float]] | None:
        fitted = self.recommender._fitted
        if fitted is None or fitted.version != version:
            return None
        return Recommender.related(fitted, post_id, text, audience=audience, limit=limit)

    def pid(self) -> int:
        return os.getpid()

    @staticmethod
    def _info(fitted: Any) -> CorpusInfo:
        return CorpusInfo(fitted.version, len(fitted.docs), fitted.vectorizer is not None)


OPS: dict[str, Callable[..., Any]] = {
    name: getattr(Worker, name) for name in ("moderate", "keywords", "fit", "extend", "rank", "related", "pid")
}


def main(conn: Connection, config: WorkerConfig) -> None:
    """The worker's loop: one request, one answer, until the serving process closes the pipe or stops it."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole process group: the parent stops us
    try:
        warm_up()
        worker = Worker(config)
    except Exception as exc:  # a bad setting: say why instead of dying silently
        conn.send((False, RuntimeError(f"AI worker failed to start: {type(exc).__name__}: {exc}")))
        return
    conn.send((True, os.getpid()))
    while True:
        try:
            op, args = conn.recv()
        except (EOFError, OSError):  # the serving process is gone or closed the pipe
            return
        try:
            answer: tuple[bool, Any] = (True, OPS[op](worker, *args))
        except Exception as exc:
            answer = (False, exc)
        try:
            conn.send(answer)
        except (BrokenPipeError, OSError):
            return
        except Exception as exc:  # an answer or exception that does not pickle
            conn.send((False, RuntimeError(f"AI worker: {op} answered something unpicklable: {exc}")))
