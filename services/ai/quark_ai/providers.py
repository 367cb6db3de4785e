"""LLM providers behind one interface, and the resilience around them.

* `LocalProvider` — the default when nothing is configured: no model, no network. It cannot write
  free text and says so; the draft flow turns it into an extractive outline.
* `OllamaProvider` — Ollama's `/api/chat` or `/api/generate` (non-streaming).
* `OpenAIProvider` — any OpenAI-compatible `/v1/chat/completions`.
* `Resilient` — wraps a remote provider: per-attempt timeout, retries with backoff on connection
  errors, connect timeouts and 5xx/429 (not on a read timeout: a slow model stays slow), and a
  circuit breaker (closed → open after N consecutive failed requests → half-open after `reset`
  seconds, one trial request). Failures surface as `ProviderUnavailable`, which the API turns
  into 503 problem+json.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import httpx

from quark_ai.settings import AISettings

LOCAL_NOTICE = (
    "No language model is configured, so this is an extractive outline, not generated text. "
    "Free-text generation needs a configured LLM provider (QUARK_AI_PROVIDER=ollama with "
    "QUARK_AI_OLLAMA_URL, or QUARK_AI_PROVIDER=openai with QUARK_AI_OPENAI_URL)."
)


class ProviderUnavailable(Exception):
    """The provider could not answer (down, timing out, erroring, or the breaker is open)."""

    def __init__(self, detail: str, *, retry_after: int = 5) -> None:
        super().__init__(detail)
        self.detail = detail
        self.retry_after = retry_after


class _Retryable(Exception):
    pass


@dataclass(frozen=True)
class Completion:
    text: str
    provider: str
    model: str


class Provider(Protocol):
    name: str
    model: str
    generates: bool  # False: cannot write free text (the local provider)

    async def complete(self, system: str, prompt: str, *, max_tokens: int) -> Completion: ...

    def state(self) -> dict[str, Any]: ...


class LocalProvider:
    """No model: honest extractive work only (see textutil); `complete` is never called for it."""

    name = "local"
    model = "extractive-v1"
    generates = False

    async def complete(self, system: str, prompt: str, *, max_tokens: int) -> Completion:
        raise ProviderUnavailable(LOCAL_NOTICE)

    def state(self) -> dict[str, Any]:
        return {
            "provider": self.name,
            "model": self.model,
            "generates": False,
            "breaker": "closed",
            "notice": LOCAL_NOTICE,
        }


def _raise_for(resp: httpx.Response, what: str) -> None:
    if resp.status_code >= 500 or resp.status_code == 429:
        raise _Retryable(f"{what} answered {resp.status_code}")
    if resp.status_code >= 400:
        raise ProviderUnavailable(f"{what} refused the request ({resp.status_code})")


class OllamaProvider:
    name = "ollama"
    generates = True

    def __init__(self, base_url: str, model: str, *, api: Literal["chat", "generate"], client: httpx.AsyncClient):
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.api = api
        self.client = client

    async def complete(self, system: str, prompt: str, *, max_tokens: int) -> Completion:
        options = {"num_predict": max_tokens, "temperature": 0.7}
        if self.api == "chat":
            body: dict[str, Any] = {
                "model": self.model,
                "stream": False,
                "options": options,
                "messages": [{"role": "system", "content": system}, {"role": "user", "content": prompt}],
            }
            resp = await self.client.post(f"{self.base_url}/api/chat", json=body)
            _raise_for(resp, "ollama")
            text = _dig(resp, "message", "content")
        else:
            body = {"model": self.model, "stream": False, "options": options, "system": system, "prompt": prompt}
            resp = await self.client.post(f"{self.base_url}/api/generate", json=body)
            _raise_for(resp, "ollama")
            text = _dig(resp, "response")
        return Completion(text, self.name, self.model)

    def state(self) -> dict[str, Any]:
        return {"provider": self.name, "model": self.model, "generates": True}


class OpenAIProvider:
    name = "openai"
    generates = True

    def __init__(self, base_url: str, model: str, *, api_key: str | None, client: httpx.AsyncClient) -> None:
        base = base_url.rstrip("/")
        self.url = (base if base.endswith("/v1") else base + "/v1") + "/chat/completions"
        self.model = model
        self.headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.client = client

    async def complete(self, system: str, prompt: str, *, max_tokens: int) -> Completion:
        body = {
            "model": self.model,
            "max_tokens": max_tokens,
            "temperature": 0.7,
            "messages": [{"role": "system", "content": system}, {"role": "user", "content": prompt}],
        }
        resp = await self.client.post(self.url, json=body, headers=self.headers)
        _raise_for(resp, "openai endpoint")
        try:
            choices = resp.json()["choices"]
            text = choices[0]["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError):
            raise _Retryable("openai endpoint sent an answer without choices[0].message.content") from None
        if not isinstance(text, str):
            raise _Retryable("openai endpoint sent non-text content")
        return Completion(text, self.name, self.model)

    def state(self) -> dict[str, Any]:
        return {"provider": self.name, "model": self.model, "generates": True}


def _dig(resp: httpx.Response, *path: str) -> str:
    try:
        value: Any = resp.json()
        for key in path:
            value = value[key]
    except (ValueError, KeyError, TypeError):
        raise _Retryable(f"provider answer lacks {'.'.join(path)}") from None
    if not isinstance(value, str):
        raise _Retryable(f"provider answer {'.'.join(path)} is not text")
    return value


@dataclass
class CircuitBreaker:
    failures_to_open: int
    reset_after: float
    clock: Any = time.monotonic
    failures: int = 0
    opened_at: float | None = None
    _trial: bool = field(default=False, repr=False)

    @property
    def state(self) -> str:
        if self.opened_at is None:
            return "closed"
        return "half-open" if self.clock() - self.opened_at >= self.reset_after else "open"

    def before(self) -> None:
        """Raise when the breaker is open; in half-open let exactly one trial request through."""
        st = self.state
        if st == "open" or (st == "half-open" and self._trial):
            assert self.opened_at is not None
            wait = max(1, int(self.reset_after - (self.clock() - self.opened_at)) + 1)
            raise ProviderUnavailable("the language model provider is unavailable (circuit open)", retry_after=wait)
        if st == "half-open":
            self._trial = True

    def success(self) -> None:
        self.failures, self.opened_at, self._trial = 0, None, False

    def failure(self) -> None:
        self.failures += 1
        self._trial = False
        if self.opened_at is not None or self.failures >= self.failures_to_open:
            self.opened_at = self.clock()


class Resilient:
    """Timeouts, retries with backoff and a circuit breaker around a remote provider."""

    generates = True

    def __init__(
        self, inner: OllamaProvider | OpenAIProvider, *, retries: int, backoff: float, breaker: CircuitBreaker
    ) -> None:
        self.inner = inner
        self.name = inner.name
        self.model = inner.model
        self.retries = retries
        self.backoff = backoff
        self.breaker = breaker

    async def complete(self, system: str, prompt: str, *, max_tokens: int) -> Completion:
        self.breaker.before()
        delay = self.backoff
        last = "no attempt"
        for attempt in range(self.retries + 1):
            try:
                result = await self.inner.complete(system, prompt, max_tokens=max_tokens)
            except ProviderUnavailable:
                self.breaker.failure()
                raise
            except httpx.ReadTimeout:
                # The model is too slow for `provider_timeout`: another attempt would only triple the wait.
                last = "timed out waiting for the model"
                break
            except (_Retryable, httpx.TransportError) as exc:
                last = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
                if attempt < self.retries:
                    await asyncio.sleep(delay)
                    delay *= 2
                continue
            self.breaker.success()
            return result
        self.breaker.failure()
        raise ProviderUnavailable(f"the language model provider is unavailable ({last[:200]})")

    def state(self) -> dict[str, Any]:
        return {**self.inner.state(), "breaker": self.breaker.state, "consecutive_failures": self.breaker.failures}


def build_provider(settings: AISettings, client: httpx.AsyncClient) -> Provider:
    """The configured provider (see AISettings.provider)."""
    choice = settings.provider
    if choice == "auto":
        choice = "ollama" if settings.ollama_url else "openai" if settings.openai_url else "local"
    breaker = CircuitBreaker(settings.breaker_failures, settings.breaker_reset)
    inner: OllamaProvider | OpenAIProvider
    if choice == "ollama":
        if not settings.ollama_url:
            raise ValueError("QUARK_AI_PROVIDER=ollama needs QUARK_AI_OLLAMA_URL")
        inner = OllamaProvider(settings.ollama_url, settings.model, api=settings.ollama_api, client=client)
    elif choice == "openai":
        if not settings.openai_url:
            raise ValueError("QUARK_AI_PROVIDER=openai needs QUARK_AI_OPENAI_URL")
        key = settings.openai_api_key.get_secret_value() if settings.openai_api_key else None
        inner = OpenAIProvider(settings.openai_url, settings.openai_model, api_key=key, client=client)
    else:
        return LocalProvider()
    return Resilient(inner, retries=settings.provider_retries, backoff=settings.provider_retry_backoff, breaker=breaker)
