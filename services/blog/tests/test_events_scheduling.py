"""Idempotent event handling, the events blog publishes, and scheduled publishing (injected clock)."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from typing import Any

from blog_testkit import Blog
from sqlalchemy import text

from quark_blog.service import publish_due_posts
from quark_sdk.events import stream_for
from quark_sdk.testing import QuarkTestEnv, eventually, read_stream


async def _count(blog: Blog, sql: str, **params: Any) -> int:
    async with blog.svc.ctx.database().session() as session:
        return int((await session.execute(text(sql), params)).scalar_one())


async def _published_events(blog: Blog, domain: str) -> list[dict[str, Any]]:
    bus = blog.svc.ctx.bus
    assert bus is not None
    messages = await read_stream(bus.js, stream_for(domain, blog.quark.namespace))
    return [json.loads(msg.data or b"{}") for msg in messages]


async def test_same_event_twice_applies_once(blog: Blog) -> None:
    alice, bob = blog.person("alice"), blog.person("bob")
    await blog.register(alice)
    await blog.register(bob)
    post = await blog.post(alice, "x")
    await blog.fanned_out(post["id"])
    follow = {
        "follower_id": bob.id,
        "follower_username": "bob",
        "followee_id": alice.id,
        "followee_username": "alice",
        "at": datetime.now(UTC).isoformat(),
    }
    eid = await blog.apply("quark.user.followed", follow)
    await blog.apply("quark.user.followed", follow, event_id=eid)  # redelivered copy (inbox absorbs it)
    await blog.apply("quark.user.followed", follow)  # same fact, new event id (handler is idempotent)
    assert await _count(blog, "SELECT count(*) FROM follows") == 1
    assert await blog.home(bob) == [post["id"]]
    # A flag delivered twice opens one report and hides once.
    flag = {
        "target_type": "post",
        "target_id": post["id"],
        "score": 0.9,
        "labels": ["spam"],
        "reason": "r",
        "run_id": "run-1",
    }
    fid = await blog.apply("quark.ai.moderation_flagged", flag)
    await blog.apply("quark.ai.moderation_flagged", flag, event_id=fid)
    await blog.apply("quark.ai.moderation_flagged", flag)  # same verdict (run_id), new event id
    assert await _count(blog, "SELECT count(*) FROM reports") == 1
    await blog.apply("quark.ai.moderation_flagged", {**flag, "run_id": "run-2"})  # a new verdict: a new report
    assert await _count(blog, "SELECT count(*) FROM reports") == 2
    # A payload PostgreSQL cannot store is dead-lettered at once (it could never apply).
    await blog.emit("quark.ai.moderation_flagged", {**flag, "labels": ["a\u0000b"], "run_id": "run-3"})
    # Deleting a user twice is harmless.
    for _ in range(2):
        await blog.apply("quark.user.deleted", {"user_id": alice.id})
    assert await _count(blog, "SELECT count(*) FROM posts") == 0
    # Profiles: the latest update wins, repeats change nothing.
    upd = {
        "user_id": bob.id,
        "username": "bobby",
        "display_name": "Bobby",
        "bio": "",
        "avatar": None,
        "privacy": "public",
    }
    await blog.apply("quark.user.profile_updated", upd)
    await blog.apply("quark.user.profile_updated", upd)
    await blog.post(bob, "hi")
    assert (await blog.client.get("/api/v1/posts/by/bobby")).json()["items"][0]["author"]["display_name"] == "Bobby"
    # A payload that can never be valid is dead-lettered, not retried forever; later events still apply.
    await blog.emit("quark.user.followed", {"follower_id": ""})
    await blog.apply(
        "quark.user.unfollowed", {"follower_id": bob.id, "followee_id": alice.id, "at": datetime.now(UTC).isoformat()}
    )


async def test_published_events_carry_the_contract(blog: Blog) -> None:
    alice, bob = blog.person("alice"), blog.person("bob")
    post = await blog.post(alice, "Hello world", "Body **text**", tags=["Intro"], media_ids=["m1"])
    await blog.client.patch(f"/api/v1/posts/{post['id']}", json={"title": "Hello again"}, headers=alice.headers)
    c = (
        await blog.client.post(f"/api/v1/posts/{post['id']}/comments", json={"body": "nice"}, headers=bob.headers)
    ).json()
    await blog.client.post(f"/api/v1/posts/{post['id']}/reactions", json={"kind": "love"}, headers=bob.headers)
    await blog.client.post(f"/api/v1/posts/{post['id']}/report", json={"reason": "meh"}, headers=bob.headers)
    await blog.client.delete(f"/api/v1/posts/{post['id']}", headers=alice.headers)

    async def all_out() -> list[dict[str, Any]] | None:
        events = await _published_events(blog, "post") + await _published_events(blog, "comment")
        return events if len(events) == 6 else None

    events = {e["type"]: e["data"] for e in await eventually(all_out, what="six events published")}
    pub = events["quark.post.published"]
    assert {
        k: pub[k]
        for k in (
            "post_id",
            "author_id",
            "author_username",
            "title",
            "slug",
            "excerpt",
            "body_text",
            "tags",
            "visibility",
            "media_ids",
        )
    } == {
        "post_id": post["id"],
        "author_id": alice.id,
        "author_username": "alice",
        "title": "Hello world",
        "slug": "hello-world",
        "excerpt": "Body text",
        "body_text": "Body text",
        "tags": ["intro"],
        "visibility": "public",
        "media_ids": ["m1"],
    }
    assert pub["published_at"]
    assert events["quark.post.updated"]["title"] == "Hello again"
    assert events["quark.comment.created"] == {
        "comment_id": c["id"],
        "post_id": post["id"],
        "post_author_id": alice.id,
        "author_id": bob.id,
        "author_username": "bob",
        "parent_id": None,
        "parent_author_id": None,
        "body_text": "nice",
        "created_at": events["quark.comment.created"]["created_at"],
    }
    assert events["quark.post.reacted"] == {
        "post_id": post["id"],
        "post_author_id": alice.id,
        "user_id": bob.id,
        "kind": "love",
        "action": "added",
    }
    assert events["quark.post.reported"]["target_type"] == "post"
    assert events["quark.post.deleted"] == {"post_id": post["id"], "author_id": alice.id}


async def test_scheduled_post_publishes_when_the_clock_says_so(blog: Blog) -> None:
    alice, bob = blog.person("alice"), blog.person("bob")
    await blog.register(alice)
    await blog.register(bob)
    await blog.follow(bob, alice)
    await blog.home(bob)
    now = datetime.now(UTC)
    at = now + timedelta(days=365)
    resp = await blog.client.post(
        "/api/v1/posts", json={"title": "Later", "body": "b", "scheduled_at": at.isoformat()}, headers=alice.headers
    )
    post = resp.json()
    assert post["status"] == "scheduled"
    assert (await blog.client.get("/api/v1/feed/public")).json()["items"] == []
    rt = blog.rt
    rt.clock = lambda: at + timedelta(seconds=1)  # jump the service's clock past the schedule
    rt.wake_scheduler.set()

    async def published() -> bool:
        items = (await blog.client.get("/api/v1/feed/public")).json()["items"]
        return [p["id"] for p in items] == [post["id"]]

    await eventually(published, what="scheduled post published by the background job")
    got = (await blog.client.get(f"/api/v1/posts/{post['id']}")).json()
    assert got["status"] == "published" and got["scheduled_at"] is None
    await eventually(lambda: blog.home(bob), what="in the follower's timeline")


async def test_two_schedulers_publish_each_post_once(quark: QuarkTestEnv) -> None:
    from quark_blog.app import module

    svc = await quark.start(module, write_rate_limit=100_000)
    rt = svc.ctx.runtime
    # A second instance on the same database (as two replicas of the service would be).
    db_url = svc.settings.database_url
    other = await quark.start(module, database_url=db_url, write_rate_limit=100_000)
    rt2 = other.ctx.runtime
    headers = quark.bearer(quark.user_token("u1", username="u1"))
    at = datetime.now(UTC) + timedelta(days=30)
    for i in range(40):
        r = await svc.client.post(
            "/api/v1/posts", json={"title": f"s{i}", "body": "b", "scheduled_at": at.isoformat()}, headers=headers
        )
        assert r.status_code == 201
    later = at + timedelta(minutes=1)
    results = await asyncio.gather(*(publish_due_posts(r, now=later, limit=7) for r in (rt, rt2) for _ in range(5)))
    ids = [i for batch in results for i in batch]
    ids += await publish_due_posts(rt, now=later)
    assert len(ids) == 40 and len(set(ids)) == 40
    async with svc.ctx.database().session() as session:
        n = await session.execute(text("SELECT count(*) FROM quark_outbox WHERE type = 'quark.post.published'"))
        assert n.scalar_one() == 40


async def test_schedule_endpoint(blog: Blog) -> None:
    alice = blog.person("alice")
    draft = (await blog.client.post("/api/v1/posts", json={"title": "d", "body": "b"}, headers=alice.headers)).json()
    url = f"/api/v1/posts/{draft['id']}/schedule"
    bad = await blog.client.post(url, json={"at": "2001-01-01T00:00:00Z"}, headers=alice.headers)
    assert bad.status_code == 422
    at = datetime.now(UTC) + timedelta(days=2)
    ok = await blog.client.post(url, json={"at": at.isoformat()}, headers=alice.headers)
    assert ok.status_code == 200 and ok.json()["status"] == "scheduled"
    assert await publish_due_posts(blog.rt, now=at - timedelta(seconds=1)) == []
    assert [str(i) for i in await publish_due_posts(blog.rt, now=at)] == [draft["id"]]
