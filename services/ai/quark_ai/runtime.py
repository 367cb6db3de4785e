"""What a running AI instance holds beside the SDK context: provider, HTTP clients, limiter, models.

Built once per running instance by the SDK (`QuarkModule(runtime=build_runtime)`) and handed to
routes (`Runtime`) and event handlers (their first argument), so several instances in one process never mix up.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx

from quark_ai.classifier import Moderator
from quark_ai.cpu import CPUWorkers
from quark_ai.cpu_worker import WorkerConfig
from quark_ai.providers import Provider, build_provider
from quark_ai.settings import AISettings
from quark_sdk.app import ServiceContext
from quark_sdk.ratelimit import RateLimiter

Clock = Callable[[], datetime]


def system_clock() -> datetime:
    return datetime.now(UTC)


@dataclass
class AIRuntime:
    ctx: ServiceContext[AISettings, AIRuntime]
    provider: Provider
    provider_http: httpx.AsyncClient
    blog_http: httpx.AsyncClient  # replaceable in tests (e.g. by a blog module's in-process client)
    limiter: RateLimiter
    moderator: Moderator
    cpu: CPUWorkers  # the worker processes: classifier, keywords, the recommendation model
    clock: Clock = system_clock

    @property
    def settings(self) -> AISettings:
        return self.ctx.settings

    def now(self) -> datetime:
        return self.clock()

    async def aclose(self) -> None:
        await asyncio.gather(self.provider_http.aclose(), self.blog_http.aclose(), self.cpu.aclose(),
                             return_exceptions=True)


async def build_runtime(ctx: ServiceContext[AISettings, AIRuntime]) -> AIRuntime:
    s = ctx.settings
    provider_http = httpx.AsyncClient(timeout=httpx.Timeout(s.provider_timeout, connect=min(5.0, s.provider_timeout)))
    return AIRuntime(
        ctx=ctx,
        provider=build_provider(s, provider_http),
        provider_http=provider_http,
        blog_http=httpx.AsyncClient(base_url=s.blog_base_url(), timeout=s.blog_timeout),
        limiter=RateLimiter(ctx.cache(), prefix=ctx.key()),
        moderator=Moderator(s.moderation_threshold, s.moderation_rules, s.moderation_max_chars),
        cpu=CPUWorkers(s.cpu_workers, WorkerConfig(s.moderation_max_chars,
                                                   tuple(r.model_dump() for r in s.moderation_rules))),
    )
