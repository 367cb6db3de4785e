"""Honest extractive text work that needs no model: keywords (tags), a title, a summary.

Used by the tagging agent, by `POST /api/v1/ai/assist`, and by the local provider. Pure
functions, no I/O.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter

from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

_WORD = re.compile(r"[^\W\d_][\w'-]{2,}", re.UNICODE)
_SENTENCE = re.compile(r"(?<=[.!?])\s+|\n{2,}|\n(?=\s*[-*#>])")
# Control characters, and what PostgreSQL text cannot hold (NUL) or UTF-8 cannot encode (lone surrogates).
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff]")
_TAG = re.compile(r"[^a-z0-9]+")
EXTRA_STOP = frozenset(
    {
        "just",
        "like",
        "really",
        "get",
        "got",
        "make",
        "made",
        "use",
        "used",
        "using",
        "way",
        "thing",
        "things",
        "lot",
        "lots",
        "good",
        "new",
        "one",
        "also",
        "would",
        "could",
        "should",
        "will",
        "can",
        "may",
        "might",
        "post",
        "blog",
        "today",
        "time",
        "know",
        "think",
        "want",
        "need",
        "let",
        "it's",
        "don't",
        "i'm",
        "you're",
        "that's",
        "there's",
        "we're",
        "they're",
        "isn't",
        "doesn't",
        "didn't",
        "can't",
        "won't",
    }
)
STOP = frozenset(ENGLISH_STOP_WORDS) | EXTRA_STOP


def clean(text: str) -> str:
    """Drop control characters and unstorable code points (keeps newlines and tabs), then normalise (NFKC)."""
    return unicodedata.normalize("NFKC", _CONTROL.sub("", text))


def words(text: str) -> list[str]:
    return [w.strip("'-").lower() for w in _WORD.findall(text)]


def tag_of(word: str) -> str:
    return _TAG.sub("-", word.lower()).strip("-")[:40].strip("-")


def keywords(text: str, *, title: str = "", limit: int = 5, exclude: frozenset[str] = frozenset()) -> list[str]:
    """The most telling words as tags: frequency without stop words, title words counted three times."""
    counts: Counter[str] = Counter()
    for w in words(text):
        if w not in STOP and len(w) > 2:
            counts[w] += 1
    for w in words(title):
        if w not in STOP and len(w) > 2:
            counts[w] += 3
    out: list[str] = []
    for word, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
        tag = tag_of(word)
        if not tag or tag in exclude or tag in out:
            continue
        if n < 2 and len(out) >= 1:
            break  # a word seen once says little once we have something better
        out.append(tag)
        if len(out) >= limit:
            break
    return out


def sentences(text: str) -> list[str]:
    parts = [re.sub(r"\s+", " ", p).strip(" -*#>\t") for p in _SENTENCE.split(text)]
    return [p for p in parts if len(p) > 1]


def summary(text: str, *, max_sentences: int = 2, max_chars: int = 400) -> str:
    """The sentences whose words are most frequent in the whole text, in their original order."""
    sents = sentences(text)
    if len(sents) <= max_sentences:
        return _cut(" ".join(sents), max_chars)
    freq = Counter(w for w in words(text) if w not in STOP)
    scored = []
    for i, s in enumerate(sents):
        ws = [w for w in words(s) if w not in STOP]
        score = sum(freq[w] for w in ws) / (len(ws) ** 0.5 or 1.0)
        scored.append((score + (0.5 if i == 0 else 0.0), i))
    best = sorted(i for _, i in sorted(scored, reverse=True)[:max_sentences])
    return _cut(" ".join(sents[i] for i in best), max_chars)


def title(text: str, *, max_chars: int = 120) -> str:
    """A Markdown heading if there is one, otherwise the first sentence, cut at a word boundary."""
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            heading = stripped.lstrip("#").strip()
            if heading:
                return _cut(heading, max_chars)
    sents = sentences(text)
    return _cut(sents[0].rstrip(".!?"), max_chars) if sents else ""


def _cut(text: str, max_chars: int) -> str:
    if len(text) <= max_chars:
        return text
    cut = text[: max_chars - 1].rsplit(" ", 1)[0]
    return cut.rstrip(" ,;:") + "…"


INJECTION = re.compile(
    r"\b(?:ignore|disregard|forget) (?:all |any )?(?:the |your )?(?:previous|prior|above|earlier) "
    r"(?:instructions|prompts?|rules|messages)\b"
    r"|\bsystem prompt\b|\byou are now\b|\bact as (?:an? )?(?:admin|administrator|moderator|system)\b"
    r"|\b(?:publish|approve) (?:this|it|the (?:post|draft)) (?:now|immediately|automatically)\b",
    re.IGNORECASE,
)


def looks_like_injection(text: str) -> bool:
    """Text that tries to steer an AI agent. It is data either way; this only raises a warning."""
    return INJECTION.search(text) is not None
