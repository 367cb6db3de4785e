"""AI service hot paths, each against a baseline measured in the same run (no servers needed).

* moderation: the verdict as the agent computes it (whole text + every sentence, rules) against the
  bare classifier on the whole text only — the price of not letting one abusive line be diluted.
* recommendations: ranking one user against the cached TF-IDF model, against refitting the model
  per request (what `corpus_refresh` avoids).
* the serving process (issue #21): the CPU work of one published post (moderation, tag keywords, related
  posts) done the way the AI module did it before the worker processes — moderation in a process pool
  sent the whole `Moderator` per call, keywords inline, related posts in a thread — against the worker
  processes (cpu.py). Printed: posts/s, the serving process's CPU time per post (all its threads), and how
  late the serving process's event loop ran a 1 ms timer meanwhile (what every other module of an
  embedded station feels).

    .venv/bin/python bench/ai.py [--posts 5000] [--pipeline 200]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import random
import statistics
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime, timedelta

from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

from quark_ai import textutil
from quark_ai.audience import Audience
from quark_ai.classifier import Moderator, _predict, warm_up
from quark_ai.cpu import CPUWorkers
from quark_ai.cpu_worker import WorkerConfig
from quark_ai.recommend import Doc, Fitted, Recommender
from quark_ai.settings import DEFAULT_RULES


def _doc_text(d: Doc) -> str:
    return f"{d.title} {d.title} {' '.join(d.tags)} {d.text}"


async def _with_lag(work: Callable[[], Awaitable[None]]) -> tuple[float, float, float, float]:
    """(seconds, serving-process CPU seconds, timer lateness p99 ms, max ms) while `work` runs."""
    lags: list[float] = []
    done = asyncio.Event()

    async def ticker() -> None:
        while not done.is_set():
            t = time.perf_counter()
            await asyncio.sleep(0.001)
            lags.append(time.perf_counter() - t - 0.001)

    tick = asyncio.create_task(ticker())
    t, cpu = time.perf_counter(), time.process_time()
    await work()
    elapsed, cpu = time.perf_counter() - t, time.process_time() - cpu
    done.set()
    await tick
    lags.sort()
    return elapsed, cpu, lags[int(len(lags) * 0.99)] * 1000, lags[-1] * 1000


async def pipeline(posts: list[str], docs: list[Doc], mod: Moderator, rec: Recommender, fitted: Fitted) -> None:
    anyone = Audience(None)
    n = len(posts)

    pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"), initializer=warm_up)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(pool, warm_up)

    async def before() -> None:
        for i, p in enumerate(posts):
            await loop.run_in_executor(pool, mod.score, f"title {i}\n\n{p}")
            textutil.keywords(p, title=f"title {i}", limit=5)
            doc = _doc_text(docs[i % len(docs)])
            await asyncio.to_thread(rec.related, fitted, str(i), doc, audience=anyone, limit=15)

    workers = CPUWorkers(2, WorkerConfig(20_000, tuple(r.model_dump() for r in DEFAULT_RULES)))
    await workers.start()
    corpus = await workers.fit(fitted.version, docs)

    async def after() -> None:
        for i, p in enumerate(posts):
            mod.verdict(await workers.moderate(f"title {i}\n\n{p}"))
            await workers.keywords(p, title=f"title {i}", limit=5, exclude=frozenset())
            await workers.related(corpus, str(i), _doc_text(docs[i % len(docs)]), audience=anyone, limit=15)

    try:
        for name, work in (("before (pool + inline + thread)", before), ("after (worker processes)", after),
                           ("before, again", before), ("after, again", after)):
            elapsed, cpu, p99, worst = await _with_lag(work)
            print(f"post pipeline, {name:32} {n / elapsed:6.0f} posts/s  serving-process CPU "
                  f"{cpu / n * 1000:6.2f} ms/post  event-loop lateness p99 {p99:6.2f} ms  max {worst:6.1f} ms")
        t = time.perf_counter()
        for _ in range(5):
            await workers.fit(("again", time.perf_counter()), docs)
        fit = (time.perf_counter() - t) / 5
        viewer = Audience("x", followees=frozenset({"3"}))
        liked = {str(i): 1.0 for i in range(0, 200, 10)}
        corpus = await workers.fit(fitted.version, docs)
        times = []
        for _ in range(20):
            t = time.perf_counter()
            await workers.rank(corpus, audience=viewer, liked=liked, now=datetime.now(UTC), follow_boost=0.25,
                               half_life_days=14, limit=70)
            times.append(time.perf_counter() - t)
        print(f"recommendations through the model's worker: refit (documents sent over the pipe) "
              f"{fit * 1000:.0f} ms  rank {statistics.median(times) * 1000:.1f} ms")
    finally:
        pool.shutdown()
        await workers.aclose()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--posts", type=int, default=5000)
    parser.add_argument("--pipeline", type=int, default=200, help="posts through the serving-process comparison")
    args = parser.parse_args()
    rnd = random.Random(1)
    vocab = sorted(ENGLISH_STOP_WORDS) + [f"topic{i}" for i in range(3000)]

    def text(sentences: int, words: int) -> str:
        return " ".join(" ".join(rnd.choice(vocab) for _ in range(words)) + "." for _ in range(sentences))

    warm_up()
    mod = Moderator(0.8, list(DEFAULT_RULES), 20_000)
    posts = [text(20, 20) for _ in range(200)]
    t = time.perf_counter()
    for p in posts:
        _predict([p])
    base = time.perf_counter() - t
    t = time.perf_counter()
    for p in posts:
        mod.score(p)
    full = time.perf_counter() - t
    print(
        f"moderation, 400-word posts: agent {len(posts) / full:7.0f}/s ({full / len(posts) * 1000:.1f} ms)  "
        f"whole-text classifier {len(posts) / base:7.0f}/s  ratio {full / base:.1f}x the baseline's time"
    )

    now = datetime.now(UTC)
    docs = [
        Doc(str(i), str(i % 300), f"title {i}", text(15, 20), (), "public", now - timedelta(hours=i))
        for i in range(args.posts)
    ]
    rec = Recommender()
    t = time.perf_counter()
    fitted = rec.fitted((1,), docs)
    fit = time.perf_counter() - t
    liked = {str(i): 1.0 for i in range(0, 200, 10)}
    viewer = Audience("x", followees=frozenset({"3"}))
    times = []
    for _ in range(20):
        t = time.perf_counter()
        rec.rank(fitted, audience=viewer, liked=liked, now=now, follow_boost=0.25, half_life_days=14, limit=10)
        times.append(time.perf_counter() - t)
    rank = statistics.median(times)
    print(
        f"recommendations, {args.posts} posts: rank with cached model {rank * 1000:.1f} ms  "
        f"refit per request {(fit + rank) * 1000:.0f} ms  ratio 1/{(fit + rank) / rank:.0f}"
    )
    if args.pipeline:
        asyncio.run(pipeline([text(20, 20) for _ in range(args.pipeline)], docs, mod, rec, fitted))


if __name__ == "__main__":
    main()
