"""The moderation classifier: a trained linear model shipped by pip, plus configurable rules.

`alt-profanity-check` bundles a TF-IDF vectoriser and a calibrated linear SVM trained on
~200k human-labelled comments (offensive vs. not); it loads from the wheel (no download) and
scores a batch of texts in milliseconds. A long text is scored per sentence and as a whole,
and the highest score counts, so one abusive line in a long post is not diluted by the rest.

The work is split in two so that an admin's threshold change needs no worker restart: `Moderator.raw`
(the CPU part: the classifier and the rules' patterns) runs in the AI worker process (cpu_worker.py), and
`Moderator.verdict` (threshold, rule scores, labels) runs in the serving process on what it returns.
"""

from __future__ import annotations

import functools
import re
import threading
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from typing import Any, NamedTuple

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


@functools.cache  # read per verdict: importlib.metadata scans the installed distributions each call
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


class Raw(NamedTuple):
    """What the worker computes for one text: plain data, cheap to send back."""

    classifier: float  # the highest probability over the whole text and its sentences
    worst: str  # the text or sentence that scored it (cut to 200 characters)
    chunks: int  # texts scored
    matched: tuple[int, ...]  # indices of the rules whose pattern matched (in the settings' order)


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
        """Blocking (CPU), in this process: the worker's `raw` and this process's `verdict` in one call."""
        return self.verdict(self.raw(text))

    def raw(self, text: str) -> Raw:
        """Blocking (CPU): the classifier over the text and its sentences, and which rules match."""
        text = textutil.clean(text)[: self.max_chars]
        chunks = [c for c in textutil.sentences(text) if len(c) >= 2][:MAX_CHUNKS]
        batch = [text, *chunks] if text.strip() else []
        probs = _predict(batch) if batch else []
        classifier = max(probs, default=0.0)
        worst = batch[probs.index(classifier)] if probs else ""
        matched = tuple(
            i for i, (rule, pattern) in enumerate(self._compiled) if _matches(pattern, text, rule.min_count)
        )
        return Raw(classifier, worst[:200], len(batch), matched)

    def verdict(self, raw: Raw) -> Verdict:
        """Cheap: this moderator's threshold and rule scores applied to `raw` (computed with the same patterns)."""
        if raw.matched and max(raw.matched) >= len(self.rules):
            raise ValueError("the raw scores were computed with other rules than this moderator's")
        classifier = raw.classifier
        labels: list[str] = []
        if classifier >= self.threshold:
            labels.append("offensive")
        matched: list[str] = []
        score = classifier
        for i in raw.matched:
            rule = self.rules[i]
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
            worst=raw.worst,
            detail={"chunks": raw.chunks, "threshold": self.threshold},
        )
