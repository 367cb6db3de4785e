"""Content-based recommendations: TF-IDF (scikit-learn) over the newest posts, blended with signals.

The model is fitted on the corpus (title counted twice, tags, text) and cached per corpus version
(count and newest update), so it is refitted only when posts change. A user's profile is the mean
TF-IDF vector of the posts they reacted to; candidates are scored by cosine similarity to it, plus
a boost for authors they follow and a small recency term that breaks ties and serves new users.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

import numpy as np
from scipy import sparse
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.preprocessing import normalize

from quark_ai.audience import Audience


class Doc(NamedTuple):
    """A post as the model knows it (a named tuple: thousands are sent to the worker process per refit)."""

    post_id: str
    author_id: str
    title: str
    text: str
    tags: tuple[str, ...]
    visibility: str
    published_at: datetime


@dataclass
class Fitted:
    version: tuple[Any, ...]
    docs: list[Doc]
    index: dict[str, int]
    matrix: Any  # scipy sparse, rows L2-normalised
    vectorizer: TfidfVectorizer | None = None
    fitted_at: float = 0.0  # time.monotonic() of the fit


class Scored(NamedTuple):
    """One ranked candidate, without its text (sent back from the worker process)."""

    post_id: str
    author_id: str
    title: str
    tags: tuple[str, ...]
    published_at: datetime
    score: float
    similarity: float
    reasons: tuple[str, ...]


def _text(d: Doc) -> str:
    return f"{d.title} {d.title} {' '.join(d.tags)} {d.text}"


class Recommender:
    """Holds the fitted model of one service instance. It lives in the AI worker process (cpu_worker.py);
    tests and the bench also use it in-process, as the reference the worker's answers are compared with."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._fitted: Fitted | None = None

    def fitted(self, version: tuple[Any, ...], docs: list[Doc]) -> Fitted:
        with self._lock:
            if self._fitted is not None and self._fitted.version == version:
                return self._fitted
            corpus = [_text(d) for d in docs]
            vec = TfidfVectorizer(
                stop_words="english",
                sublinear_tf=True,
                max_features=50_000,
                min_df=1,
                ngram_range=(1, 1),
                dtype=np.float32,
            )
            try:
                matrix = normalize(vec.fit_transform(corpus)) if docs else None
            except ValueError:  # only stop words
                matrix = None
            self._fitted = Fitted(
                version,
                docs,
                {d.post_id: i for i, d in enumerate(docs)},
                matrix,
                vec if matrix is not None else None,
                time.monotonic(),
            )
            return self._fitted

    def current(self, max_age: float) -> Fitted | None:
        """The fitted model while it is younger than `max_age` seconds (a refit costs ~2 s for 5000 posts)."""
        f = self._fitted
        if f is not None and f.vectorizer is not None and time.monotonic() - f.fitted_at < max_age:
            return f
        return None

    def extend(self, version: tuple[Any, ...], new_docs: list[Doc]) -> Fitted:
        """Between refits, place new posts with the fitted vocabulary (a transform, no refit)."""
        with self._lock:
            f = self._fitted
            assert f is not None and f.vectorizer is not None
            fresh = [d for d in new_docs if d.post_id not in f.index]
            if not fresh:
                f.version = version
                return f
            rows = normalize(f.vectorizer.transform([_text(d) for d in fresh]))
            docs = f.docs + fresh
            self._fitted = Fitted(
                version,
                docs,
                {d.post_id: i for i, d in enumerate(docs)},
                sparse.vstack([f.matrix, rows], format="csr"),
                f.vectorizer,
                f.fitted_at,
            )
            return self._fitted

    @staticmethod
    def rank(
        fitted: Fitted,
        *,
        audience: Audience,
        liked: dict[str, float],
        now: datetime,
        follow_boost: float,
        half_life_days: float,
        limit: int,
    ) -> list[Scored]:
        """Blocking (CPU). Only posts the audience's viewer may see."""
        if fitted.matrix is None or not fitted.docs:
            return []
        rows = [(fitted.index[p], w) for p, w in liked.items() if p in fitted.index]
        if rows:
            idx = [r for r, _ in rows]
            weights = np.array([w for _, w in rows], dtype=np.float32)
            profile = np.asarray(fitted.matrix[idx].T @ weights).ravel()
            norm = float(np.linalg.norm(profile))
            sims = np.asarray(fitted.matrix @ (profile / norm)).ravel() if norm > 0 else np.zeros(len(fitted.docs))
        else:
            sims = np.zeros(len(fitted.docs))
        out: list[Scored] = []
        for i, doc in enumerate(fitted.docs):
            if doc.author_id == audience.viewer or doc.post_id in liked:
                continue
            if not audience.can_see(doc.author_id, doc.visibility):
                continue
            followed = doc.author_id in audience.followees
            age_days = max(0.0, (now - doc.published_at).total_seconds() / 86400)
            recency = math.pow(0.5, age_days / half_life_days)
            sim = float(sims[i])
            score = sim + (follow_boost if followed else 0.0) + 0.05 * recency
            reasons = []
            if sim > 0.05:
                reasons.append("similar to posts you reacted to")
            if followed:
                reasons.append("from someone you follow")
            if not reasons:
                reasons.append("new on Quark")
            out.append(Scored(doc.post_id, doc.author_id, doc.title, doc.tags, doc.published_at,
                              round(score, 6), round(sim, 6), tuple(reasons)))
        out.sort(key=lambda s: (-s.score, -s.published_at.timestamp(), s.post_id))
        return out[:limit]

    @staticmethod
    def related(
        fitted: Fitted, post_id: str, text: str, *, audience: Audience, limit: int
    ) -> list[tuple[str, float]]:
        """Posts most similar to one post, that `audience` (anyone) may see; the post need not be in the corpus."""
        if fitted.matrix is None or fitted.vectorizer is None:
            return []
        vec = normalize(fitted.vectorizer.transform([text]))
        sims = np.asarray((fitted.matrix @ vec.T).toarray()).ravel()
        order = np.argsort(-sims)
        out = []
        for j in order:
            doc = fitted.docs[int(j)]
            if doc.post_id == post_id or sims[j] <= 0.05 or not audience.can_see(doc.author_id, doc.visibility):
                continue
            out.append((doc.post_id, round(float(sims[j]), 6)))
            if len(out) >= limit:
                break
        return out
