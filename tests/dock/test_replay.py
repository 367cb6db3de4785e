"""Replay at first docking: a recommendations-like module docked after 1,000 posts were published asks for
the history (`replay: all`) and applies each of the 1,000 once, through the same inbox as live events, even
when it is drained and resumed in the middle of the replay. `replay: none` and `since <time>` start where
they say. The posts go through the blog's real outbox and relay (quark.post.published, stream POST)."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from dockrecs.app import module as recs_module
from dockrecs.app import on_published, seen
from sqlalchemy import func, select

from quark_blog.app import module as blog_module
from quark_blog.schemas import PostPublished
from quark_sdk.app import start_consumers, stop_consumers
from quark_sdk.events import NONE_MARGIN, Consumer, ConsumerRunner, stream_for
from quark_sdk.outbox import add_event
from quark_sdk.replay import parse_replay
from quark_sdk.testing import QuarkTestEnv, RunningModule, eventually

POSTS = 1000


def post(i: int) -> PostPublished:
    return PostPublished(post_id=str(uuid.uuid4()), author_id=str(uuid.uuid4()), author_username=f"writer{i % 7}",
                         title=f"Post {i}", slug=f"post-{i}", excerpt="…", body_text="text", tags=["t"],
                         visibility="public", media_ids=[], published_at=datetime.now(UTC))


async def publish(quark: QuarkTestEnv, blog: RunningModule, count: int, *, start: int = 0) -> None:
    """Through the blog's outbox (the relay publishes after commit), in transactions of 100."""
    before = await stream_messages(quark, blog)
    for first in range(start, start + count, 100):
        async with blog.ctx.database().transaction() as session:
            for i in range(first, min(first + 100, start + count)):
                await add_event(session, post(i), subject=f"post/{i}")
    await eventually(lambda: _at_least(quark, blog, before + count), timeout=60, what=f"{count} posts on the stream")


async def stream_messages(quark: QuarkTestEnv, blog: RunningModule) -> int:
    try:
        info = await blog.ctx.bus.js.stream_info(stream_for("post", quark.namespace))
    except Exception:
        return 0
    return int(info.state.messages)


async def _at_least(quark: QuarkTestEnv, blog: RunningModule, n: int) -> bool:
    return await stream_messages(quark, blog) >= n


async def applied(recs: RunningModule) -> dict[str, int]:
    async with recs.ctx.database().session() as session:
        count, most = (await session.execute(select(func.count(), func.coalesce(func.max(seen.c.times), 0)))).one()
    return {"events": int(count), "max_times": int(most)}


async def test_module_docked_after_1000_posts_sees_all_of_them_once(quark: QuarkTestEnv) -> None:
    blog = await quark.start(blog_module, write_rate_limit=100_000)
    await publish(quark, blog, POSTS)

    recs = await quark.start(recs_module)  # docks now; its manifest says replay: all
    assert recs.ctx.manifest.replay == "all"

    async def halfway() -> bool:
        return (await applied(recs))["events"] >= POSTS // 4

    await eventually(halfway, timeout=60, what="the replay under way")
    await stop_consumers(recs.ctx)  # drained mid-replay (what a disable does), unacked messages come back
    await start_consumers(recs.ctx)  # enabled again: the durable consumer resumes where it was

    async def all_seen() -> dict[str, Any] | None:
        state = await applied(recs)
        return state if state["events"] >= POSTS else None

    state = await eventually(all_seen, timeout=120, what="1,000 replayed posts applied")
    assert state == {"events": POSTS, "max_times": 1}
    info = await recs.ctx.bus.js._jsm.consumer_info(stream_for("post", quark.namespace), "dockrecs-posts")
    assert str(info.config.deliver_policy) in ("all", "DeliverPolicy.ALL")

    await publish(quark, blog, 5, start=POSTS)  # live events after the replay: the same consumer, once each
    state = await eventually(lambda: _count_is(recs, POSTS + 5), timeout=60, what="live posts applied")
    assert state == {"events": POSTS + 5, "max_times": 1}


async def _count_is(recs: RunningModule, n: int) -> dict[str, int] | None:
    state = await applied(recs)
    return state if state["events"] >= n else None


async def runner(recs: RunningModule, purpose: str, replay: str) -> ConsumerRunner:
    consumer = Consumer[None](purpose)
    consumer.on("quark.post.published")(on_published)
    r = ConsumerRunner(consumer, bus=recs.ctx.bus, db=recs.ctx.database(), service="dockrecs",
                       replay=parse_replay(replay))
    await r.start()
    return r


async def test_replay_none_and_since_start_where_they_say(quark: QuarkTestEnv) -> None:
    blog = await quark.start(blog_module, write_rate_limit=100_000)
    recs = await quark.start(recs_module)
    await stop_consumers(recs.ctx)  # only the runners below write to `seen`
    await publish(quark, blog, 20)
    cut = datetime.now(UTC)
    await publish(quark, blog, 7, start=20)
    last_publish = time.monotonic()

    since = await runner(recs, "since", f"since {cut.isoformat()}")
    await eventually(lambda: _count_is(recs, 7), timeout=60, what="posts since the cut")
    await since.stop()
    assert await applied(recs) == {"events": 7, "max_times": 1}
    # `none` starts at its start time less NONE_MARGIN (clock skew): let the last post be older than that.
    await asyncio.sleep(max(0.0, NONE_MARGIN + 0.5 - (time.monotonic() - last_publish)))

    none = await runner(recs, "none", "none")  # nothing from before its first start …
    await eventually(lambda: none.ready.is_set(), what="subscribed")
    await publish(quark, blog, 3, start=27)  # … only what comes after
    await eventually(lambda: _count_is(recs, 10), timeout=60, what="new posts")
    await none.stop()
    assert await applied(recs) == {"events": 10, "max_times": 1}
