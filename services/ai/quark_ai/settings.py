"""Settings of the AI service (env prefix `QUARK_AI_`); durations are in seconds.

The provider is picked by `provider`: `auto` (the default) uses Ollama when `ollama_url` is set,
an OpenAI-compatible endpoint when `openai_url` is set, and otherwise the local extractive provider.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, SecretStr, field_validator
from pydantic_settings import SettingsConfigDict

from quark_sdk.config import ServiceSettings


class ModerationRule(BaseModel):
    """A configurable moderation rule: a case-insensitive regular expression that adds `label` with `score`."""

    name: str = Field(min_length=1, max_length=64)
    pattern: str = Field(min_length=1, max_length=500)
    label: str = Field(min_length=1, max_length=64)
    score: float = Field(ge=0.0, le=1.0)
    min_count: int = Field(default=1, ge=1, le=1000)  # matches needed (e.g. 6 links), counted without backtracking

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, v: str) -> str:
        import re

        try:
            re.compile(v)
        except re.error as exc:
            raise ValueError(f"not a regular expression: {exc}") from None
        return v


DEFAULT_RULES: list[ModerationRule] = [
    ModerationRule(name="link-spam", pattern=r"https?://\S+", label="spam", score=0.9, min_count=6),
    ModerationRule(
        name="contact-spam",
        pattern=r"\b(?:buy now|free money|click here to win|crypto giveaway|work from home and earn)\b",
        label="spam",
        score=0.9,
    ),
    ModerationRule(
        name="threat", pattern=r"\b(?:i will|i'm going to|gonna) (?:kill|hurt|find) you\b", label="threat", score=0.95
    ),
    # Attempts to steer an AI agent. Scored below the default threshold: noted on the run, never obeyed.
    ModerationRule(
        name="prompt-injection",
        pattern=r"\b(?:ignore|disregard) (?:all |any )?(?:the )?(?:previous|prior|above) "
        r"(?:instructions|prompts?|rules)\b|\bsystem prompt\b",
        label="prompt_injection",
        score=0.5,
    ),
]


class AISettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="QUARK_AI_", extra="ignore", validate_default=True)

    port: int = Field(default=3006, ge=1, le=65535)

    # -- providers
    provider: Literal["auto", "local", "ollama", "openai"] = "auto"
    ollama_url: str | None = None  # e.g. http://ollama:11434
    ollama_api: Literal["chat", "generate"] = "chat"
    model: str = Field(default="llama3.2:1b", min_length=1, max_length=200)  # Ollama model
    openai_url: str | None = None  # base URL of an OpenAI-compatible server (…/v1/chat/completions is appended)
    openai_api_key: SecretStr | None = None
    openai_model: str = Field(default="gpt-4o-mini", min_length=1, max_length=200)
    provider_timeout: float = Field(default=60.0, gt=0, le=600)  # one attempt
    provider_retries: int = Field(default=2, ge=0, le=10)  # extra attempts on timeouts / 5xx / connection errors
    provider_retry_backoff: float = Field(default=0.5, ge=0, le=30)  # first backoff; doubles each retry
    breaker_failures: int = Field(default=3, ge=1, le=100)  # consecutive failed requests that open the breaker
    breaker_reset: float = Field(default=30.0, gt=0, le=3600)  # open → half-open after this long
    generation_max_tokens: int = Field(default=1200, ge=16, le=32_000)

    # -- per-user quotas (Redis sliding window, shared by every instance)
    draft_quota: int = Field(default=20, ge=1)  # draft requests per user per window
    draft_quota_window: float = Field(default=86_400.0, gt=0)
    assist_quota: int = Field(default=200, ge=1)  # extractive assists per user per window
    assist_quota_window: float = Field(default=3600.0, gt=0)

    # -- input limits
    max_request_bytes: int = Field(default=262_144, ge=1024, le=16 * 1_048_576)  # whole request body: 413
    max_topic_chars: int = Field(default=500, ge=10, le=20_000)  # a draft topic (the prompt): 413 beyond
    max_draft_chars: int = Field(default=50_000, ge=100, le=1_000_000)  # a draft body (generated or edited)
    max_assist_chars: int = Field(default=50_000, ge=100, le=1_000_000)
    max_page_size: int = Field(default=100, ge=1, le=1000)

    # -- the worker processes that run the CPU work (classifier, tag keywords, TF-IDF fits and ranking), so it
    # never holds the serving process's GIL. One of them also holds the recommendation model; with 2 or more,
    # a refit does not hold up moderation. Each worker is ~100 MB (scikit-learn and the classifier's model).
    cpu_workers: int = Field(default=2, ge=1, le=32)

    # -- moderation
    moderation_threshold: float = Field(default=0.9, gt=0.0, le=1.0)  # the classifier is strict on mild swearing
    moderation_rules: list[ModerationRule] = Field(default_factory=lambda: list(DEFAULT_RULES))
    moderation_max_chars: int = Field(default=20_000, ge=100, le=1_000_000)  # text scored per item

    # -- recommendations
    corpus_size: int = Field(default=5000, ge=10, le=200_000)  # newest posts the TF-IDF model is fitted on
    corpus_refresh: float = Field(default=60.0, ge=0, le=86_400)  # refit the model at most this often (s)
    follow_boost: float = Field(default=0.25, ge=0, le=10)
    recency_half_life_days: float = Field(default=14.0, gt=0)

    # -- the blog, for approved drafts and moderators' restores (default: the gateway)
    blog_url: str | None = None
    blog_timeout: float = Field(default=10.0, gt=0, le=120)

    def blog_base_url(self) -> str:
        return (self.blog_url or self.gateway_url).rstrip("/")
