"""Home timelines: Redis sorted sets filled on write (fan-out), with the database behind them.

Per user two keys (namespaced with `ctx.key`):

* ``home:<user>`` — sorted set, member = post id, score = published_at in integer
  microseconds (exact in a double), newest last; capped at ``timeline_cap`` entries.
* ``homef:<user>`` — the *floor*: the set holds every entry with a score above it.
  Its presence marks the timeline as warm. ``0`` means complete; trimming the
  oldest entries raises the floor to the highest trimmed score.

Fan-out only writes to warm timelines (a cold user's first read builds theirs from
the database), so memory goes to active readers. A rebuild sets the floor marker to
``0`` *before* it reads the database: a publish committed before that marker is in
the rebuild's read, one fanned out after it lands in the set — none is lost.

Reads never trust the set blindly: the page is hydrated from PostgreSQL with the
current follow graph, blocks, visibility, hidden/deleted state and suspensions, so
a stale entry is filtered, never shown; removals keep the set tidy. Below the floor
the page continues from the database.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import redis.asyncio as aioredis

from quark_sdk.app import ServiceContext

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)

# KEYS[1]=set KEYS[2]=floor; ARGV[1]=cap, then member, score pairs. Only a warm timeline is written.
_ADD = """
local floor = redis.call('GET', KEYS[2])
if not floor then return 0 end
floor = tonumber(floor)
local added = 0
for i = 2, #ARGV, 2 do
  if tonumber(ARGV[i + 1]) > floor then
    redis.call('ZADD', KEYS[1], ARGV[i + 1], ARGV[i])
    added = added + 1
  end
end
if added == 0 then return 0 end
local cap = tonumber(ARGV[1])
local n = redis.call('ZCARD', KEYS[1])
if n > cap then
  local removed = redis.call('ZRANGE', KEYS[1], n - cap - 1, n - cap - 1, 'WITHSCORES')
  redis.call('ZREMRANGEBYRANK', KEYS[1], 0, n - cap - 1)
  if tonumber(removed[2]) > floor then redis.call('SET', KEYS[2], removed[2], 'KEEPTTL') end
end
local ttl = redis.call('PTTL', KEYS[2])
if ttl > 0 then redis.call('PEXPIRE', KEYS[1], ttl) end
return added
"""

# KEYS[1]=set KEYS[2]=floor; ARGV: max score (inclusive), count, ttl ms. nil when cold.
# One bulk string "floor member score member score ..." (a flat reply is parsed ~5x faster than an array).
_READ = """
local floor = redis.call('GET', KEYS[2])
if not floor then return false end
redis.call('PEXPIRE', KEYS[2], ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
local items = redis.call('ZREVRANGEBYSCORE', KEYS[1], ARGV[1], '-inf', 'WITHSCORES', 'LIMIT', 0, ARGV[2])
return floor .. ' ' .. table.concat(items, ' ')
"""

# KEYS[1]=set KEYS[2]=floor; ARGV: ttl ms. Start a rebuild: empty set, floor 0 (accept every fan-out).
_BEGIN = """
redis.call('DEL', KEYS[1])
redis.call('SET', KEYS[2], '0', 'PX', ARGV[1])
return 1
"""

# KEYS[2]=floor; ARGV[1]=floor found by the rebuild: raise it (never lower a trim's floor).
_RAISE_FLOOR = """
local floor = redis.call('GET', KEYS[2])
if floor and tonumber(ARGV[1]) > tonumber(floor) then redis.call('SET', KEYS[2], ARGV[1], 'KEEPTTL') end
return 1
"""


def score_of(published_at: datetime) -> int:
    """Exact integer microseconds since the epoch (doubles hold them exactly until year 2255)."""
    return (published_at - EPOCH) // _US


def from_score(score: int) -> datetime:
    return EPOCH + score * _US


@dataclass
class Timelines:
    ctx: ServiceContext
    cap: int
    ttl_ms: int

    def __post_init__(self) -> None:
        r = self.redis
        self._add = r.register_script(_ADD)
        self._read = r.register_script(_READ)
        self._begin = r.register_script(_BEGIN)
        self._raise = r.register_script(_RAISE_FLOOR)

    @property
    def redis(self) -> aioredis.Redis:
        return self.ctx.cache()

    def keys(self, user_id: str) -> list[str]:
        return [self.ctx.key("home", user_id), self.ctx.key("homef", user_id)]

    # -- reads ---------------------------------------------------------------------------------

    async def read(
        self, user_id: str, *, max_score: int | None, count: int
    ) -> tuple[int, list[tuple[int, str]]] | None:
        """(floor, [(score, post_id), ...] newest first, scores <= max_score), or None when cold."""
        arg = "+inf" if max_score is None else str(max_score)
        res = await self._read(keys=self.keys(user_id), args=[arg, count, self.ttl_ms])
        if res is None:
            return None
        floor_raw, *flat = _text(res).split()
        entries = [(int(float(flat[i + 1])), flat[i]) for i in range(0, len(flat), 2)]
        return int(float(floor_raw)), entries

    async def begin_rebuild(self, user_id: str) -> None:
        await self._begin(keys=self.keys(user_id), args=[self.ttl_ms])

    async def finish_rebuild(self, user_id: str, entries: Sequence[tuple[int, str]], complete: bool) -> None:
        keys = self.keys(user_id)
        if entries:
            await self._add(keys=keys, args=[self.cap, *_flatten(entries)])
        if not complete and entries:
            await self._raise(keys=keys, args=[min(s for s, _ in entries)])

    # -- writes (fan-out) ----------------------------------------------------------------------

    async def add(self, user_ids: Iterable[str], entries: Sequence[tuple[int, str]], chunk: int = 1000) -> None:
        """Add entries to every warm timeline among `user_ids` (pipelined, `chunk` users per round trip)."""
        if not entries:
            return
        args = [self.cap, *_flatten(entries)]
        batch: list[str] = []
        for uid in user_ids:
            batch.append(uid)
            if len(batch) >= chunk:
                await self._add_batch(batch, args)
                batch = []
        if batch:
            await self._add_batch(batch, args)

    async def _add_batch(self, user_ids: list[str], args: list[Any]) -> None:
        if len(user_ids) == 1:
            await self._add(keys=self.keys(user_ids[0]), args=args)
            return
        async with self.redis.pipeline(transaction=False) as pipe:
            for uid in user_ids:
                await self._add(keys=self.keys(uid), args=args, client=pipe)
            await pipe.execute()

    async def remove(self, user_ids: Iterable[str], post_ids: Sequence[str], chunk: int = 1000) -> None:
        if not post_ids:
            return
        batch: list[str] = []
        for uid in user_ids:
            batch.append(uid)
            if len(batch) >= chunk:
                await self._remove_batch(batch, post_ids)
                batch = []
        if batch:
            await self._remove_batch(batch, post_ids)

    async def _remove_batch(self, user_ids: list[str], post_ids: Sequence[str]) -> None:
        async with self.redis.pipeline(transaction=False) as pipe:
            for uid in user_ids:
                pipe.zrem(self.ctx.key("home", uid), *post_ids)
            await pipe.execute()

    async def drop(self, user_id: str) -> None:
        await self.redis.delete(*self.keys(user_id))


def _flatten(entries: Sequence[tuple[int, str]]) -> list[Any]:
    out: list[Any] = []
    for score, member in entries:
        out.extend((member, score))
    return out


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def post_key(post_id: uuid.UUID | str) -> str:
    return str(post_id)
