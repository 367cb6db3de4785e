"""Browser sessions: the tokens stay server-side in Valkey, the browser holds only a random id.

The cookie carries 32 random bytes (URL-safe); Valkey keys are the id's SHA-256, so a dump of Valkey
does not give anyone a usable cookie. Refresh is transparent: a request that finds its access token
about to expire rotates the refresh token with the auth module, under a per-session lock, so two
parallel requests never present the same refresh token twice (auth would see a reuse and revoke the
whole family).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import secrets
import time
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any

from quark_web.apiclient import ApiError, ModuleDown

if TYPE_CHECKING:
    from quark_web.runtime import WebRuntime

AUTH = "/api/v1/auth"


def new_id() -> str:
    return secrets.token_urlsafe(32)


def digest(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


@dataclass
class WebSession:
    """What the web module remembers about a signed-in browser."""

    user_id: str
    username: str
    access_token: str
    access_exp: float
    refresh_token: str
    refresh_exp: float
    display_name: str | None = None
    roles: list[str] = field(default_factory=list)
    auth_session_id: str | None = None
    email_verified: bool = False
    created_at: float = field(default_factory=time.time)

    @classmethod
    def from_tokens(cls, tokens: dict[str, Any]) -> WebSession:
        now = time.time()
        user = tokens["user"]
        return cls(user_id=str(user["id"]), username=user["username"], display_name=user.get("display_name"),
                   roles=list(user.get("roles", [])), email_verified=bool(user.get("email_verified")),
                   access_token=tokens["access_token"], access_exp=now + int(tokens["expires_in"]),
                   refresh_token=tokens["refresh_token"], refresh_exp=now + int(tokens["refresh_expires_in"]),
                   auth_session_id=str(tokens.get("session_id") or "") or None)

    def apply_tokens(self, tokens: dict[str, Any]) -> None:
        fresh = WebSession.from_tokens(tokens)
        fresh.created_at = self.created_at
        self.__dict__.update(fresh.__dict__)

    @property
    def is_admin(self) -> bool:
        return "admin" in self.roles

    @property
    def is_moderator(self) -> bool:
        return "moderator" in self.roles or self.is_admin


RECENT_MAX = 10_000


class SessionStore:
    """Sessions in Valkey, and the ones this instance read in the last `session_cache_seconds` (one Valkey
    round trip fewer for each page of a person clicking through; a page is about a dozen of those a second
    at most). Whatever this instance writes or deletes is written through at once; a refresh and the wait
    for another request's refresh always read Valkey itself."""

    def __init__(self, rt: WebRuntime) -> None:
        self.rt = rt
        self._recent: dict[str, tuple[float, WebSession]] = {}

    def _remember(self, key: str, sess: WebSession) -> None:
        seconds = self.rt.settings.session_cache_seconds
        if seconds <= 0:
            return
        self._recent.pop(key, None)
        if len(self._recent) >= RECENT_MAX:  # the oldest first (insertion order)
            for old in list(self._recent)[: RECENT_MAX // 10]:
                del self._recent[old]
        self._recent[key] = (time.monotonic() + seconds, replace(sess))

    def _key(self, sid_hash: str, kind: str = "session") -> str:
        return self.rt.ctx.key(kind, sid_hash)

    def _ttl(self, sess: WebSession) -> int:
        left = int(sess.refresh_exp - time.time())
        return max(1, min(self.rt.settings.session_ttl, left))

    async def create(self, tokens: dict[str, Any]) -> tuple[str, WebSession]:
        sid = new_id()
        sess = WebSession.from_tokens(tokens)
        await self.save(sid, sess)
        return sid, sess

    async def save(self, sid: str, sess: WebSession) -> None:
        key = self._key(digest(sid))
        self._recent.pop(key, None)
        await self.rt.redis.set(key, json.dumps(asdict(sess)), ex=self._ttl(sess))
        self._remember(key, sess)

    async def load(self, sid: str, *, recent: bool = True) -> WebSession | None:
        """The session (a copy of its own for the caller); `recent=False` reads Valkey whatever was cached."""
        key = self._key(digest(sid))
        if recent and (hit := self._recent.get(key)) is not None:
            if hit[0] > time.monotonic():
                return replace(hit[1])
            del self._recent[key]
        raw = await self.rt.redis.get(key)
        if raw is None:
            self._recent.pop(key, None)
            return None
        try:
            sess = WebSession(**json.loads(raw))
        except (TypeError, ValueError):
            return None
        self._remember(key, sess)
        return sess

    async def delete(self, sid: str) -> None:
        key = self._key(digest(sid))
        self._recent.pop(key, None)
        await self.rt.redis.delete(key)

    async def fresh(self, sid: str, sess: WebSession) -> WebSession | None:
        """The session with an access token that is good for at least `refresh_margin` seconds; None when it
        can no longer be refreshed (revoked, expired): the person is signed out."""
        if sess.access_exp - time.time() > self.rt.settings.refresh_margin:
            return sess
        return await self.refresh(sid, sess)

    async def refresh(self, sid: str, sess: WebSession) -> WebSession | None:
        redis = self.rt.redis
        lock = self._key(digest(sid), "refresh-lock")
        if not await redis.set(lock, "1", nx=True, ex=15):
            return await self._wait_for_refresh(sid, sess)
        try:
            # Read again under the lock: a request that loaded the session before another one refreshed it,
            # and takes the lock after that one let go, holds a refresh token already spent — presenting it
            # would make auth see a reuse and revoke the whole family.
            current = await self.load(sid, recent=False)
            if current is None:
                return None
            if current.access_token != sess.access_token:
                return current
            sess = current
            try:
                tokens = await self.rt.api.post(f"{AUTH}/refresh", json={"refresh_token": sess.refresh_token})
            except ModuleDown:
                return sess  # auth is down: keep the session, the next request tries again
            except ApiError as exc:
                if exc.status in (400, 401, 403, 404, 422):
                    await self.delete(sid)
                    return None
                return sess
            sess.apply_tokens(tokens)
            await self.save(sid, sess)
            return sess
        finally:
            await redis.delete(lock)

    async def _wait_for_refresh(self, sid: str, sess: WebSession) -> WebSession | None:
        """Another request of this browser is refreshing: use its result (a poll with a deadline)."""
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            await asyncio.sleep(0.05)
            current = await self.load(sid, recent=False)
            if current is None:
                return None
            if current.access_token != sess.access_token:
                return current
        return sess

    # -- the pending second login step (the mfa_token never reaches the browser) --------------------

    async def put_pending_mfa(self, mfa_token: str, ttl: int, login: str) -> str:
        pid = new_id()
        await self.rt.redis.set(self._key(digest(pid), "mfa"), json.dumps({"mfa_token": mfa_token, "login": login}),
                                ex=max(1, ttl))
        return pid

    async def get_pending_mfa(self, pid: str) -> dict[str, str] | None:
        raw = await self.rt.redis.get(self._key(digest(pid), "mfa"))
        return json.loads(raw) if raw else None

    async def drop_pending_mfa(self, pid: str) -> None:
        await self.rt.redis.delete(self._key(digest(pid), "mfa"))
