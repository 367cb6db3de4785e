"""`quark remove NAME --purge-data` leaves nothing of the module on the bus: its durable consumers and their
max-deliveries advisory streams are deleted (as the NATS operator), while another module's consumers — one
whose name merely starts the same way included — and the event streams themselves stay."""

from __future__ import annotations

from dockrecs.app import module as recs_module

from quark_blog.app import module as blog_module
from quark_sdk.app import stop_consumers
from quark_sdk.events import stream_for
from quark_sdk.lifecycle_cli import purge_consumers
from quark_sdk.testing import QuarkTestEnv, eventually


async def _consumers(js: object, stream: str) -> set[str]:
    return {c.name for c in await js.consumers_info(stream)}  # type: ignore[attr-defined]


async def test_purge_deletes_the_modules_consumers_and_advisories_only(quark: QuarkTestEnv) -> None:
    from nats.js.api import ConsumerConfig

    blog = await quark.start(blog_module, write_rate_limit=100_000)
    recs = await quark.start(recs_module)
    js = recs.ctx.bus.js
    post = stream_for("post", quark.namespace)
    await eventually(lambda: _has(js, post, "dockrecs-posts"), what="dockrecs' durable consumer")
    # A module named dockrecs-extra: its consumer's name starts with "dockrecs-" too.
    await js.add_consumer(post, ConsumerConfig(durable_name="dockrecs-extra-posts"))
    await stop_consumers(recs.ctx)  # removed: drained first

    ours = [i.config.name for i in await js.streams_info() if i.config.name.startswith(post)]
    before = await _consumers(js, post)
    assert {"dockrecs-posts", "dockrecs-extra-posts"} <= before
    advisories = [s for s in ours if s.endswith("_ADV_dockrecs-posts")]
    assert advisories, ours  # the consumer keeps its max-deliveries advisories in a stream of their own
    deleted = await purge_consumers(js, "dockrecs", others=["dockrecs-extra", "blog"], streams=ours)

    after = await _consumers(js, post)
    assert "dockrecs-posts" not in after and f"{post}/dockrecs-posts" in deleted
    assert after == before - {"dockrecs-posts"}  # dockrecs-extra's and blog's consumers stay
    assert all(s in deleted for s in advisories)
    left = {i.config.name for i in await js.streams_info()}
    assert post in left and not any(s in left for s in advisories)
    assert await purge_consumers(js, "dockrecs", others=["dockrecs-extra"], streams=[post]) == []  # idempotent
    del blog


async def _has(js: object, stream: str, name: str) -> bool:
    try:
        return name in await _consumers(js, stream)
    except Exception:
        return False
