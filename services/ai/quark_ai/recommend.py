"""Content-based recommendations: TF-IDF (scikit-learn) over the newest posts, blended with signals.

The model is fitted on the corpus (title counted twice, tags, text) and cached per corpus version
(count and newest update), so it is refitted only when posts change. A user's profile is the mean
TF-IDF vector of the posts they reacted to; candidates are scored by cosine similarity to it, plus
a boost for authors they follow and a small recency term that breaks ties and serves new users.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.preprocessing import normalize


@dataclass(frozen=True)
class Doc:
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


@dataclass(frozen=True)
class Scored:
    doc: Doc
    score: float
    similarity: float
    reasons: tuple[str, ...]


class Recommender:
    """Holds the fitted model of one service instance; thread-safe (fits run in a worker thread)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._fitted: Fitted | None = None

    def fitted(self, version: tuple[Any, ...], docs: list[Doc]) -> Fitted:
        with self._lock:
            if self._fitted is not None and self._fitted.version == version:
                return self._fitted
            corpus = [f"{d.title} {d.title} {' '.join(d.tags)} {d.text}" for d in docs]
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
            self._fitted = Fitted(version, docs, {d.post_id: i for i, d in enumerate(docs)}, matrix)
            return self._fitted

    @staticmethod
    def rank(
        fitted: Fitted,
        *,
        user_id: str,
        liked: dict[str, float],
        followees: set[str],
        now: datetime,
        follow_boost: float,
        half_life_days: float,
        limit: int,
    ) -> list[Scored]:
        """Blocking (CPU): call through asyncio.to_thread."""
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
            if doc.author_id == user_id or doc.post_id in liked:
                continue
            followed = doc.author_id in followees
            if doc.visibility == "private" or (doc.visibility == "followers" and not followed):
                continue
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
            out.append(Scored(doc, round(score, 6), round(sim, 6), tuple(reasons)))
        out.sort(key=lambda s: (-s.score, -s.doc.published_at.timestamp(), s.doc.post_id))
        return out[:limit]

    @staticmethod
    def related(fitted: Fitted, post_id: str, *, limit: int) -> list[tuple[str, float]]:
        """Posts most similar to one post (public ones only)."""
        if fitted.matrix is None or post_id not in fitted.index:
            return []
        i = fitted.index[post_id]
        sims = np.asarray(fitted.matrix @ fitted.matrix[i].T.toarray()).ravel()
        order = np.argsort(-sims)
        out = []
        for j in order:
            doc = fitted.docs[int(j)]
            if int(j) == i or doc.visibility != "public" or sims[j] <= 0.05:
                continue
            out.append((doc.post_id, round(float(sims[j]), 6)))
            if len(out) >= limit:
                break
        return out
