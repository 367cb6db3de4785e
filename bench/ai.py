"""AI service hot paths, each against a baseline measured in the same run (no servers needed).

* moderation: the verdict as the agent computes it (whole text + every sentence, rules) against the
  bare classifier on the whole text only — the price of not letting one abusive line be diluted.
* recommendations: ranking one user against the cached TF-IDF model, against refitting the model
  per request (what `corpus_refresh` avoids).

    .venv/bin/python bench/ai.py [--posts 5000]
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from datetime import UTC, datetime, timedelta

from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

from quark_ai.classifier import Moderator, _predict, warm_up
from quark_ai.recommend import Doc, Recommender
from quark_ai.settings import DEFAULT_RULES


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--posts", type=int, default=5000)
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
    times = []
    for _ in range(20):
        t = time.perf_counter()
        rec.rank(
            fitted, user_id="x", liked=liked, followees={"3"}, now=now, follow_boost=0.25, half_life_days=14, limit=10
        )
        times.append(time.perf_counter() - t)
    rank = statistics.median(times)
    print(
        f"recommendations, {args.posts} posts: rank with cached model {rank * 1000:.1f} ms  "
        f"refit per request {(fit + rank) * 1000:.0f} ms  ratio 1/{(fit + rank) / rank:.0f}"
    )


if __name__ == "__main__":
    main()
