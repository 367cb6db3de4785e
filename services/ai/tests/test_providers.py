"""Provider plumbing without a server: the circuit breaker, answer parsing, provider selection."""

from __future__ import annotations

import httpx
import pytest

from quark_ai.drafts import _parse_generated
from quark_ai.providers import CircuitBreaker, LocalProvider, ProviderUnavailable, Resilient, build_provider
from quark_ai.settings import AISettings


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_breaker_opens_half_opens_and_closes() -> None:
    clock = Clock()
    b = CircuitBreaker(2, 10.0, clock=clock)
    b.before()
    b.failure()
    assert b.state == "closed"
    b.failure()
    assert b.state == "open"
    with pytest.raises(ProviderUnavailable) as exc:
        b.before()
    assert exc.value.retry_after >= 1
    clock.t = 10.0
    assert b.state == "half-open"
    b.before()  # the one trial request
    with pytest.raises(ProviderUnavailable):
        b.before()  # a second caller while the trial is out
    b.failure()  # the trial failed: open again for a full period
    assert b.state == "open"
    clock.t = 20.0
    b.before()
    b.success()
    assert b.state == "closed" and b.failures == 0


def test_provider_selection() -> None:
    client = httpx.AsyncClient()
    assert isinstance(build_provider(AISettings(), client), LocalProvider)
    ollama = build_provider(AISettings(ollama_url="http://o:11434"), client)
    assert isinstance(ollama, Resilient) and ollama.name == "ollama"
    openai = build_provider(AISettings(openai_url="http://x/v1"), client)
    assert openai.name == "openai"
    assert isinstance(build_provider(AISettings(provider="local", ollama_url="http://o"), client), LocalProvider)
    with pytest.raises(ValueError, match="OLLAMA_URL"):
        build_provider(AISettings(provider="ollama"), client)


def test_generated_answers_are_only_text() -> None:
    title, body = _parse_generated("```markdown\n# Hello\n\nBody text.\n```", 1000)
    assert (title, body) == ("Hello", "Body text.")
    title, body = _parse_generated("No heading here. More.", 1000)
    assert title == "No heading here" and body == "No heading here. More."
    title, body = _parse_generated("# T\n" + "x" * 50, 10)
    assert len(body) == 10
