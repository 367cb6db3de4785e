"""The web client's only way to the other modules: their public HTTP APIs through the gateway.

Every call carries the person's own bearer token (or none); an error answer becomes an `ApiError`
holding the module's problem+json, and a module that cannot be reached becomes a `ModuleDown`
(a degraded section on the page, never a blank one).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import httpx

from quark_sdk.inprocess import Answer, direct_get

log = logging.getLogger("quark.web.api")

# Which module answers a prefix (DESIGN §3), to name the one that is down.
MODULES = (
    ("/api/v1/auth", "auth"), ("/api/v1/users", "user"), ("/api/v1/media", "media"),
    ("/api/v1/posts", "blog"), ("/api/v1/feed", "blog"), ("/api/v1/comments", "blog"),
    ("/api/v1/search", "blog"), ("/api/v1/messages", "messaging"), ("/api/v1/chats", "messaging"),
    ("/api/v1/notifications", "messaging"), ("/api/v1/ai", "ai"), ("/api/v1/hub", "hub"),
)


def module_of(path: str) -> str:
    for prefix, name in MODULES:
        if path.startswith(prefix):
            return name
    return "gateway"


@dataclass
class ApiError(Exception):
    """A module answered 4xx/5xx: `problem` is its problem+json (or a minimal one)."""

    status: int
    problem: dict[str, Any] = field(default_factory=dict)
    module: str = ""

    def __str__(self) -> str:
        return f"{self.module} {self.status}: {self.problem.get('detail') or self.problem.get('title')}"

    @property
    def code(self) -> str:
        """The problem's machine code: `code`, or the last segment of its `type` URI."""
        code = self.problem.get("code")
        if isinstance(code, str) and code:
            return code
        kind = self.problem.get("type")
        return kind.rstrip("/").rsplit("/", 1)[-1] if isinstance(kind, str) and kind else ""


class ModuleDown(ApiError):
    """The module could not be reached (connection refused, timeout, 502/503/504 from the gateway)."""


class Api:
    """httpx against the gateway; JSON in, JSON out."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client

    async def request(self, method: str, path: str, *, token: str | None = None, json: Any = None,
                      params: dict[str, Any] | None = None, headers: dict[str, str] | None = None,
                      files: Any = None, data: Any = None, timeout: float | None = None) -> Any:
        hdrs = dict(headers or {})
        if token:
            hdrs["Authorization"] = f"Bearer {token}"
        module = module_of(path)
        clean = {k: v for k, v in (params or {}).items() if v is not None}
        try:
            resp: httpx.Response | Answer | None = None
            if method == "GET" and json is None and files is None and data is None:
                # In the embedded station: the same request handed to the gateway without httpx's machinery.
                resp = await direct_get(self.client, path, params=clean, headers=hdrs, timeout=timeout)
            if resp is None:
                extra: dict[str, Any] = {"timeout": timeout} if timeout is not None else {}
                resp = await self.client.request(method, path, json=json, params=clean, headers=hdrs, files=files,
                                                 data=data, **extra)
        except httpx.HTTPError as exc:
            log.warning("%s %s: %s is unreachable: %r", method, path, module, exc)
            raise ModuleDown(503, {"title": "Service unavailable", "detail": str(exc)}, module) from None
        if resp.status_code >= 400:
            try:
                problem = resp.json()
                if not isinstance(problem, dict):
                    problem = {"detail": str(problem)}
            except ValueError:
                problem = {"title": resp.reason_phrase}
            problem.setdefault("status", resp.status_code)
            if resp.status_code in (502, 503, 504) or (resp.status_code == 404 and problem.get("detail", "")
                                                         .startswith("no module serves")):
                raise ModuleDown(503, problem, module)  # whatever the gateway said: the module is not there
            raise ApiError(resp.status_code, problem, module)
        if resp.status_code == 204 or not resp.content:
            return None
        if resp.headers.get("content-type", "").startswith(("application/json", "application/problem+json")):
            return resp.json()
        return resp.content

    async def get(self, path: str, **kw: Any) -> Any:
        return await self.request("GET", path, **kw)

    async def post(self, path: str, **kw: Any) -> Any:
        return await self.request("POST", path, **kw)

    async def patch(self, path: str, **kw: Any) -> Any:
        return await self.request("PATCH", path, **kw)

    async def delete(self, path: str, **kw: Any) -> Any:
        return await self.request("DELETE", path, **kw)
