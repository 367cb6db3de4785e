"""The moderation classifier: a trained linear model shipped by pip, plus configurable rules.

`alt-profanity-check` bundles a TF-IDF vectoriser and a calibrated linear SVM trained on
~200k human-labelled comments (offensive vs. not); it loads from the wheel (no download) and
scores a batch of texts in milliseconds. A long text is scored per sentence and as a whole,
and the highest score counts, so one abusive line in a long post is not diluted by the rest.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from quark_ai import textutil
from quark_ai.settings import ModerationRule

_lock = threading.Lock()
_model: Any = None

MAX_CHUNKS = 400


def _predict(texts: list[str]) -> list[float]:
    global _model
    with _lock:
        if _model is None:
            from profanity_check import predict_prob  # loads the bundled model (~1 s) on first use

            _model = predict_prob
    return [float(x) for x in _model(texts)]


def model_name() -> str:
    try:
        return f"alt-profanity-check {version('alt-profanity-check')}"
    except PackageNotFoundError:  # pragma: no cover - declared dependency
        return "alt-profanity-check"


def warm_up() -> None:
    """Load the model now (startup) rather than in the first event's transaction."""
    _predict(["hello"])


def _matches(pattern: re.Pattern[str], text: str, needed: int) -> bool:
    if needed == 1:
        return pattern.search(text) is not None
    return any(count >= needed for count, _ in enumerate(pattern.finditer(text), start=1))


@dataclass
class Verdict:
    score: float
    classifier_score: float
    labels: list[str]
    rules: list[str]
    reason: str
    flagged: bool
    worst: str = ""
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass
class Moderator:
    threshold: float
    rules: list[ModerationRule]
    max_chars: int
    _compiled: list[tuple[ModerationRule, re.Pattern[str]]] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._compiled = [(r, re.compile(r.pattern, re.IGNORECASE)) for r in self.rules]

    def score(self, text: str) -> Verdict:
        """Blocking (CPU): call through asyncio.to_thread."""
        text = textutil.clean(text)[: self.max_chars]
        chunks = [c for c in textutil.sentences(text) if len(c) >= 2][:MAX_CHUNKS]
        batch = [text, *chunks] if text.strip() else []
        probs = _predict(batch) if batch else []
        classifier = max(probs, default=0.0)
        worst = batch[probs.index(classifier)] if probs else ""
        labels: list[str] = []
        if classifier >= self.threshold:
            labels.append("offensive")
        matched: list[str] = []
        score = classifier
        for rule, pattern in self._compiled:
            if _matches(pattern, text, rule.min_count):
                matched.append(rule.name)
                if rule.label not in labels:
                    labels.append(rule.label)
                score = max(score, rule.score)
        flagged = score >= self.threshold
        parts = [f"classifier {classifier:.2f}"]
        if matched:
            parts.append("rules: " + ", ".join(matched))
        reason = ("automatic moderation: " if flagged else "passed: ") + "; ".join(parts)
        return Verdict(
            score=round(score, 4),
            classifier_score=round(classifier, 4),
            labels=labels,
            rules=matched,
            reason=reason[:500],
            flagged=flagged,
            worst=worst[:200],
            detail={"chunks": len(batch), "threshold": self.threshold},
        )
