"""Helpers for the AI service's tests: a running AI module, events in, and an Ollama test double.

`OllamaDouble` is a small HTTP server (uvicorn on 127.0.0.1) speaking the parts of Ollama's API the
provider uses (`POST /api/chat`, `POST /api/generate`, `GET /api/tags`, non-streaming), and the OpenAI-compatible
`POST /v1/chat/completions`. Ollama and an OpenAI endpoint cannot run here (no model downloads), so this
double stands in for them over real HTTP.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy import func, select

from quark_ai.models import AgentRun
from quark_ai.runtime import AIRuntime
from quark_sdk.embedded import free_port
from quark_sdk.events import CloudEvent, processed_event_ids
from quark_sdk.outbox import outbox_table
from quark_sdk.testing import QuarkTestEnv, RunningModule, eventually
from quark_sdk.testing import assert_problem as assert_problem  # one definition, re-exported

API = "/api/v1/ai"


@dataclass
class Person:
    id: str
    username: str
    headers: dict[str, str]


@dataclass
class OllamaDouble:
    """Answers like Ollama: the reply is `reply` (or, by default, a Markdown draft that quotes the prompt)."""

    reply: str | None = None
    fail_with: int | None = None  # answer every request with this HTTP status
    requests: list[dict[str, Any]] = field(default_factory=list)
    port: int = 0
    _server: uvicorn.Server | None = None
    _task: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _answer(self, prompt: str) -> str:
        if self.reply is not None:
            return self.reply
        return (
            "# A Draft About The Topic\n\nThis draft was written for the topic below.\n\n"
            f"> {prompt.strip()}\n\nGardening tomatoes needs sun, water and patience. Tomatoes reward care."
        )

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.get("/api/tags")
        async def tags() -> dict[str, Any]:
            return {"models": [{"name": "double:latest", "model": "double:latest"}]}

        @app.post("/api/chat")
        async def chat(request: Request) -> Any:
            body = await request.json()
            self.requests.append({"path": "/api/chat", **body})
            if self.fail_with:
                return JSONResponse({"error": "double failing"}, status_code=self.fail_with)
            prompt = body["messages"][-1]["content"]
            return {
                "model": body["model"],
                "created_at": datetime.now(UTC).isoformat(),
                "done": True,
                "done_reason": "stop",
                "message": {"role": "assistant", "content": self._answer(prompt)},
            }

        @app.post("/api/generate")
        async def generate(request: Request) -> Any:
            body = await request.json()
            self.requests.append({"path": "/api/generate", **body})
            if self.fail_with:
                return JSONResponse({"error": "double failing"}, status_code=self.fail_with)
            return {
                "model": body["model"],
                "created_at": datetime.now(UTC).isoformat(),
                "done": True,
                "response": self._answer(body["prompt"]),
            }

        @app.post("/v1/chat/completions")
        async def openai_chat(request: Request) -> Any:
            """The OpenAI-compatible shape, for the OpenAI provider's test."""
            body = await request.json()
            self.requests.append(
                {"path": "/v1/chat/completions", "authorization": request.headers.get("authorization"), **body}
            )
            if self.fail_with:
                return JSONResponse({"error": {"message": "double failing"}}, status_code=self.fail_with)
            prompt = body["messages"][-1]["content"]
            return {
                "id": "chatcmpl-double",
                "object": "chat.completion",
                "model": body["model"],
                "choices": [
                    {
                        "index": 0,
                        "finish_reason": "stop",
                        "message": {"role": "assistant", "content": self._answer(prompt)},
                    }
                ],
            }

        return app

    async def start(self) -> OllamaDouble:
        self.port = free_port()
        config = uvicorn.Config(self.app(), host="127.0.0.1", port=self.port, log_level="warning", lifespan="off")
        self._server = uvicorn.Server(config)
        self._task = asyncio.create_task(self._server.serve())
        await eventually(lambda: self._server is not None and self._server.started, what="ollama double up")
        return self

    async def stop(self) -> None:
        if self._server is not None and self._task is not None:
            self._server.should_exit = True
            with contextlib.suppress(Exception):
                await self._task


@contextlib.asynccontextmanager
async def ollama_double(**kw: Any) -> AsyncIterator[OllamaDouble]:
    double = await OllamaDouble(**kw).start()
    try:
        yield double
    finally:
        await double.stop()


class AI:
    """One running AI module and the people using it."""

    def __init__(self, quark: QuarkTestEnv, svc: RunningModule) -> None:
        self.quark = quark
        self.svc = svc
        self.client: httpx.AsyncClient = svc.client

    @property
    def rt(self) -> AIRuntime:
        return self.svc.ctx.runtime

    def person(self, username: str = "alice", *, roles: tuple[str, ...] = ("user",)) -> Person:
        uid = str(uuid.uuid4())
        token = self.quark.user_token(uid, username=username, roles=roles)
        return Person(uid, username, self.quark.bearer(token))

    async def emit(self, type_name: str, data: dict[str, Any], *, event_id: str | None = None) -> str:
        """Publish a raw CloudEvent (as blog or user would) into this test's namespace."""
        event = CloudEvent(
            id=event_id or str(uuid.uuid4()), source="quark/test", type=type_name, time=datetime.now(UTC), data=data
        )
        assert self.svc.ctx.bus is not None
        await self.svc.ctx.bus.publish(event)
        return event.id

    async def applied(self, event_id: str, consumer: str = "agents") -> None:
        async def probe() -> bool:
            async with self.svc.ctx.database().session() as session:
                return event_id in await processed_event_ids(session, f"ai-{consumer}")

        await eventually(probe, what=f"event {event_id} applied by {consumer}")

    async def apply(self, type_name: str, data: dict[str, Any], *, consumer: str = "agents") -> str:
        eid = await self.emit(type_name, data)
        await self.applied(eid, consumer)
        return eid

    async def publish_post(
        self,
        author: Person | str,
        title: str,
        body: str,
        *,
        tags: list[str] | None = None,
        post_id: str | None = None,
        visibility: str = "public",
    ) -> str:
        """A quark.post.published exactly as the blog sends it (PostPublished)."""
        pid = post_id or str(uuid.uuid4())
        author_id = author if isinstance(author, str) else author.id
        await self.apply(
            "quark.post.published",
            {
                "post_id": pid,
                "author_id": author_id,
                "author_username": "author",
                "title": title,
                "slug": title.lower().replace(" ", "-")[:50],
                "excerpt": body[:100],
                "body_text": body,
                "tags": tags or [],
                "category": None,
                "visibility": visibility,
                "media_ids": [],
                "published_at": datetime.now(UTC).isoformat(),
            },
        )
        return pid

    async def react(self, who: Person, post_id: str, kind: str = "like") -> None:
        await self.apply(
            "quark.post.reacted",
            {"post_id": post_id, "post_author_id": "x", "user_id": who.id, "kind": kind, "action": "added"},
            consumer="signals",
        )

    async def follow(self, follower: Person, followee: Person | str) -> None:
        fid = followee if isinstance(followee, str) else followee.id
        await self.apply("quark.user.followed", {"follower_id": follower.id, "followee_id": fid}, consumer="signals")

    async def outbox(self, type_name: str) -> list[dict[str, Any]]:
        """Events this service wrote (committed) of one type, oldest first, as CloudEvent dicts."""
        async with self.svc.ctx.database().session() as session:
            rows = (
                await session.execute(
                    select(outbox_table.c.body).where(outbox_table.c.type == type_name).order_by(outbox_table.c.seq)
                )
            ).all()
        return [CloudEvent.model_validate_json(r.body).model_dump(mode="json") for r in rows]

    async def runs(self, agent: str | None = None) -> int:
        async with self.svc.ctx.database().session() as session:
            stmt = select(func.count()).select_from(AgentRun)
            if agent:
                stmt = stmt.where(AgentRun.agent == agent)
            return int(await session.scalar(stmt) or 0)


async def start_ai(quark: QuarkTestEnv, **settings: Any) -> AI:
    settings.setdefault("provider_retry_backoff", 0.01)
    settings.setdefault("corpus_refresh", 0.0)  # tests read recommendations right after each post
    svc = await quark.start(__import__("quark_ai.app", fromlist=["module"]).module, **settings)
    for runner in svc.ctx.consumers:
        await eventually(lambda r=runner: r.ready.is_set(), what="consumer subscribed")
    return AI(quark, svc)


