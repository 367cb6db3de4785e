"""Blog applies the moderation queue's decisions (quark.moderation.decided) on its posts and comments, and
closes its own reports and automatic flags on the target when the queue decides."""

from __future__ import annotations

import uuid
from typing import Any

import orjson
from blog_testkit import Blog, Person, assert_problem

from quark_sdk.outbox import outbox_table


def decided(target_id: str, action: str, moderator: Person, kind: str = "post") -> dict[str, Any]:
    return {"decision_id": str(uuid.uuid4()), "case_id": str(uuid.uuid4()), "kind": kind, "target_id": target_id,
            "module": "blog", "author_id": None, "action": action, "reason": "against the rules",
            "moderator_id": moderator.id, "decided_at": "2026-12-04T12:00:00+00:00"}


async def _reports(blog: Blog, mod: Person, status: str) -> list[dict[str, Any]]:
    r = await blog.client.get("/api/v1/posts/moderation/queue", params={"status": status}, headers=mod.headers)
    return list(r.json()["items"])


async def test_a_report_carries_the_snapshot_the_queue_shows(blog: Blog) -> None:
    alice, bob = blog.person("alice"), blog.person("bob")
    post = await blog.post(alice, "Spam title", "cheap pills here")
    comment = (await blog.client.post(f"/api/v1/posts/{post['id']}/comments", json={"body": "rude words"},
                                      headers=alice.headers)).json()
    assert (await blog.client.post(f"/api/v1/comments/{comment['id']}/report", json={"reason": "rude"},
                                   headers=bob.headers)).status_code == 201
    async with blog.svc.ctx.database().session() as session:
        rows = (await session.execute(outbox_table.select().where(outbox_table.c.type == "quark.post.reported"))).all()
    data = orjson.loads(rows[0].body)["data"]
    assert (data["author_id"], data["post_id"], data["title"], data["excerpt"]) == (
        alice.id, post["id"], "Spam title", "rude words")


async def test_hide_delete_and_dismiss_apply_and_close_the_reports(blog: Blog) -> None:
    alice, bob = blog.person("alice"), blog.person("bob")
    mod = blog.person("mod", roles=("moderator",))
    hidden, deleted, flagged = [await blog.post(alice, f"Post {i}", "words") for i in range(3)]
    comment = (await blog.client.post(f"/api/v1/posts/{hidden['id']}/comments", json={"body": "mean"},
                                      headers=bob.headers)).json()
    for target in (hidden, deleted):
        await blog.client.post(f"/api/v1/posts/{target['id']}/report", json={"reason": "spam"}, headers=bob.headers)
    await blog.client.post(f"/api/v1/comments/{comment['id']}/report", json={"reason": "mean"}, headers=alice.headers)
    await blog.apply("quark.ai.moderation_flagged", {"target_type": "post", "target_id": flagged["id"], "score": 0.9,
                                                     "labels": ["toxic"], "reason": "insult", "run_id": "r1"})
    assert len(await _reports(blog, mod, "open")) == 4

    hide = decided(hidden["id"], "hide", mod)
    await blog.apply("quark.moderation.decided", hide)
    await blog.apply("quark.moderation.decided", hide, event_id=None)  # the same decision again: nothing more
    await blog.apply("quark.moderation.decided", decided(deleted["id"], "delete", mod))
    await blog.apply("quark.moderation.decided", decided(comment["id"], "delete", mod, kind="comment"))
    await blog.apply("quark.moderation.decided", decided(flagged["id"], "dismiss", mod))  # the flag overruled

    assert_problem(await blog.client.get(f"/api/v1/posts/{hidden['id']}"), 404)
    own = (await blog.client.get(f"/api/v1/posts/{hidden['id']}", headers=alice.headers)).json()
    assert own["hidden"] is True and own["hidden_reason"] == "against the rules"
    assert_problem(await blog.client.get(f"/api/v1/posts/{deleted['id']}", headers=alice.headers), 404)
    gone = await blog.client.get(f"/api/v1/comments/{comment['id']}", headers=mod.headers)
    assert gone.json()["state"] == "deleted"
    public = [p["id"] for p in (await blog.client.get("/api/v1/feed/public")).json()["items"]]
    assert public == [flagged["id"]]  # restored: the flag was dismissed
    assert await _reports(blog, mod, "open") == []
    resolutions = sorted(r["resolution"] for r in await _reports(blog, mod, "resolved"))
    assert resolutions == ["deleted", "deleted", "dismissed", "hidden"]


async def test_an_ai_hidden_post_stays_hidden_when_the_flag_is_upheld(blog: Blog) -> None:
    alice = blog.person("alice")
    mod = blog.person("mod", roles=("moderator",))
    post = await blog.post(alice, "Toxic", "words")
    await blog.apply("quark.ai.moderation_flagged", {"target_type": "post", "target_id": post["id"], "score": 0.9,
                                                     "labels": ["toxic"], "reason": "insult", "run_id": "r2"})
    await blog.apply("quark.moderation.decided", decided(post["id"], "hide", mod))
    own = (await blog.client.get(f"/api/v1/posts/{post['id']}", headers=alice.headers)).json()
    assert own["hidden"] is True
    assert await _reports(blog, mod, "open") == []  # the flag no longer stays open once upheld


async def test_decisions_for_other_modules_or_unknown_targets_change_nothing(blog: Blog) -> None:
    alice = blog.person("alice")
    mod = blog.person("mod", roles=("moderator",))
    post = await blog.post(alice, "Fine", "words")
    await blog.apply("quark.moderation.decided", {**decided(post["id"], "delete", mod), "module": "messaging",
                                                  "kind": "chat_message"})
    await blog.apply("quark.moderation.decided", decided(str(uuid.uuid4()), "hide", mod))
    await blog.apply("quark.moderation.decided", decided("not-a-uuid", "hide", mod))
    assert (await blog.client.get(f"/api/v1/posts/{post['id']}")).status_code == 200
