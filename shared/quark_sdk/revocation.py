"""Accounts whose access tokens must stop working before they expire: deleted and suspended users.

An access token is verified locally from the JWKS, so it stays valid for its whole lifetime
(15 minutes) whatever happens to its account. The auth module — the owner of accounts — records
each deletion and suspension here the moment it happens (and lifts it on unsuspension); every
module's `TokenVerifier` refuses tokens issued up to that moment.

Kept in Valkey as one sorted set per station (member: user id, score: when), announced on a
pub/sub channel. Each module holds the set in memory, loaded at start, kept current from the
channel and reloaded on every reconnect and every `refresh_interval`, so checking a request costs
a dictionary lookup. Writes (`WritingUser`) also ask Valkey directly: once the auth module has
answered a deletion, no module accepts another write from that account's tokens.
An entry is kept as long as a token issued before it can live (`keep_for`), then pruned.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from quark_sdk.errors import ServiceUnavailable
from quark_sdk.tasks import cancel_and_wait

log = logging.getLogger("quark.revocation")

# An access token lives 15 minutes by default; its verifier allows a little clock leeway.
DEFAULT_KEEP_FOR = 15 * 60 + 60


def revocation_key(namespace: str = "") -> str:
    return ":".join(["quark", *([namespace] if namespace else []), "auth", "revoked-subjects"])


def revocation_channel(namespace: str = "") -> str:
    return revocation_key(namespace) + ":changes"


async def revoke_subject(redis: aioredis.Redis, subject: str, *, namespace: str = "", at: float | None = None,
                         keep_for: float = DEFAULT_KEEP_FOR) -> float:
    """Refuse every token of `subject` issued up to now (called by the auth module); returns the moment."""
    at = time.time() if at is None else at
    key = revocation_key(namespace)
    async with redis.pipeline(transaction=True) as pipe:
        pipe.zadd(key, {subject: at})
        pipe.zremrangebyscore(key, "-inf", at - keep_for)
        pipe.publish(revocation_channel(namespace), f"+{subject}:{at}")
        await pipe.execute()
    return at


async def restore_subject(redis: aioredis.Redis, subject: str, *, namespace: str = "") -> None:
    """Lift a revocation (an unsuspended account); its new tokens work at once."""
    async with redis.pipeline(transaction=True) as pipe:
        pipe.zrem(revocation_key(namespace), subject)
        pipe.publish(revocation_channel(namespace), f"-{subject}")
        await pipe.execute()


def _revoked(revoked_at: float | None, issued_at: Any) -> bool:
    if revoked_at is None:
        return False
    if not isinstance(issued_at, int | float) or isinstance(issued_at, bool):
        return True  # a token without a usable iat cannot prove it is newer
    return float(issued_at) <= revoked_at


class RevokedSubjects:
    """One module's view of the revocation list (see the module docstring)."""

    def __init__(self, redis: aioredis.Redis, *, namespace: str = "", refresh_interval: float = 30.0) -> None:
        self.redis = redis
        self.key = revocation_key(namespace)
        self.channel = revocation_channel(namespace)
        self.refresh_interval = refresh_interval
        self._revoked: dict[str, float] = {}
        self._task: asyncio.Task[None] | None = None
        self.loaded = asyncio.Event()

    def is_revoked(self, subject: str, issued_at: Any) -> bool:
        """From memory: for every request."""
        return _revoked(self._revoked.get(subject), issued_at)

    async def is_revoked_now(self, subject: str, issued_at: Any) -> bool:
        """From Valkey: for writes, exact the moment the auth module has answered. When Valkey cannot answer,
        the write is refused (503, retry later) rather than judged by a list that may have missed a change."""
        try:
            score = await self.redis.zscore(self.key, subject)
        except (RedisError, OSError) as exc:
            raise ServiceUnavailable("cannot check the account's standing right now; try again shortly",
                                     retry_after=1) from exc
        if score is None:
            self._revoked.pop(subject, None)
            return False
        self._revoked[subject] = float(score)
        return _revoked(float(score), issued_at)

    async def load(self) -> None:
        entries: list[Any] = await self.redis.zrange(self.key, 0, -1, withscores=True)
        self._revoked = {(m.decode() if isinstance(m, bytes) else str(m)): float(s) for m, s in entries}
        self.loaded.set()

    async def start(self) -> None:
        with contextlib.suppress(RedisError, OSError):
            await self.load()
        self._task = asyncio.create_task(self._follow(), name="quark-revocations")

    async def stop(self) -> None:
        if self._task is not None:
            await cancel_and_wait([self._task])
            self._task = None

    def _apply(self, data: bytes | str) -> None:
        text = data.decode() if isinstance(data, bytes) else data
        if text.startswith("+"):
            subject, _, at = text[1:].rpartition(":")
            with contextlib.suppress(ValueError):
                self._revoked[subject] = max(float(at), self._revoked.get(subject, 0.0))
        elif text.startswith("-"):
            self._revoked.pop(text[1:], None)

    async def _follow(self) -> None:
        """Subscribe, (re)load, apply changes; on any Valkey failure start over after a pause."""
        delay = 0.2
        warned = False
        while True:
            try:
                async with self.redis.pubsub(ignore_subscribe_messages=True) as pubsub:
                    await pubsub.subscribe(self.channel)
                    await self.load()  # after subscribing: nothing announced in between is missed
                    delay, warned = 0.2, False
                    next_reload = time.monotonic() + self.refresh_interval
                    while True:
                        timeout = max(0.0, next_reload - time.monotonic())
                        message = await pubsub.get_message(timeout=timeout)
                        if message is not None and message.get("type") == "message":
                            self._apply(message["data"])
                        if time.monotonic() >= next_reload:
                            await self.load()
                            next_reload = time.monotonic() + self.refresh_interval
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # never leave the list unfollowed: a dead task would accept revoked tokens
                if not warned:
                    log.warning("revocation list: cannot follow it (%s: %s); keeping the last list and retrying",
                                type(exc).__name__, exc)
                    warned = True
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
