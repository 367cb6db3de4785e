"""Moderation agent: the bundled classifier (alt-profanity-check) plus rules, flags, runs, moderator review."""

from __future__ import annotations

import uuid

from ai_testkit import AI, assert_problem, start_ai

from quark_ai.classifier import Moderator
from quark_ai.settings import DEFAULT_RULES, ModerationRule
from quark_sdk.testing import QuarkTestEnv, eventually

TOXIC = "You are a worthless stupid idiot and everyone hates you, shut the fuck up."
BENIGN = "Thanks for sharing your recipe, the tomato soup turned out wonderfully and my kids loved it."


def test_classifier_scores_toxic_high_and_benign_low() -> None:
    m = Moderator(0.8, list(DEFAULT_RULES), 20_000)
    bad, good = m.score(TOXIC), m.score(BENIGN)
    assert bad.flagged and bad.classifier_score >= 0.8 and "offensive" in bad.labels
    assert not good.flagged and good.classifier_score < 0.3 and good.labels == []


def test_one_abusive_sentence_is_not_diluted_by_a_long_benign_text() -> None:
    m = Moderator(0.8, [], 20_000)
    text = (BENIGN + " ") * 40 + "Honestly the author is a fucking moron."
    assert m.score(text).flagged


def test_rules_add_labels_and_can_flag_alone() -> None:
    rule = ModerationRule(name="crypto", pattern=r"\bcrypto giveaway\b", label="spam", score=0.9)
    m = Moderator(0.8, [rule], 20_000)
    v = m.score("Join our crypto giveaway today, lovely people")
    assert v.flagged and v.labels == ["spam"] and v.rules == ["crypto"] and v.classifier_score < 0.8


async def test_toxic_post_is_flagged_and_benign_post_passes(ai: AI) -> None:
    author = ai.person("writer")
    bad = await ai.publish_post(author, "My opinion", TOXIC)
    good = await ai.publish_post(author, "Tomato soup", BENIGN)

    flags = await ai.outbox("quark.ai.moderation_flagged")
    assert [f["data"]["target_id"] for f in flags] == [bad]
    data = flags[0]["data"]
    # What the blog consumes (services/blog ModerationFlagged), plus what the moderation queue shows.
    assert set(data) == {"target_type", "target_id", "score", "labels", "reason", "run_id", "author_id", "preview"}
    assert data["author_id"] == author.id and "You are a worthless" in data["preview"]
    assert data["target_type"] == "post" and data["score"] >= 0.8 and "offensive" in data["labels"]

    mod = ai.person("mod", roles=("moderator",))
    listed = (await ai.client.get("/api/v1/ai/moderation", headers=mod.headers)).json()["items"]
    by_target = {r["target_id"]: r for r in listed}
    assert by_target[bad]["flagged"] and by_target[bad]["run_id"] == data["run_id"]
    assert not by_target[good]["flagged"] and by_target[good]["score"] < 0.3
    only_flagged = (
        await ai.client.get("/api/v1/ai/moderation", params={"flagged": "true"}, headers=mod.headers)
    ).json()["items"]
    assert [r["target_id"] for r in only_flagged] == [bad]

    admin = ai.person("root", roles=("admin",))
    runs = (await ai.client.get("/api/v1/ai/runs", params={"agent": "moderation"}, headers=admin.headers)).json()
    outcomes = {r["input_id"]: r for r in runs["items"]}
    assert outcomes[bad]["outcome"] == "flagged" and outcomes[good]["outcome"] == "passed"
    run = outcomes[bad]
    assert run["provider"] == "local" and run["model"].startswith("alt-profanity-check")
    assert run["latency_ms"] >= 0 and run["input_type"] == "post" and run["event_id"]
    metrics = (await ai.client.get("/metrics")).text
    assert 'agent="moderation"' in metrics and 'outcome="flagged"' in metrics
    assert "quark_ai_agent_run_duration_seconds_bucket" in metrics


async def test_toxic_comment_is_flagged(ai: AI) -> None:
    cid = str(uuid.uuid4())
    await ai.apply(
        "quark.comment.created",
        {
            "comment_id": cid,
            "post_id": str(uuid.uuid4()),
            "post_author_id": "p",
            "author_id": "troll",
            "author_username": "troll",
            "parent_id": None,
            "body_text": TOXIC,
            "created_at": "2026-01-01T00:00:00Z",
        },
    )
    flags = await ai.outbox("quark.ai.moderation_flagged")
    assert [(f["data"]["target_type"], f["data"]["target_id"]) for f in flags] == [("comment", cid)]


async def test_a_comment_edited_from_benign_to_toxic_is_flagged_like_a_new_one(ai: AI) -> None:
    """#16 item 5: quark.comment.updated (the same fields as quark.comment.created) is re-moderated."""
    cid, post_id = str(uuid.uuid4()), str(uuid.uuid4())
    comment = {
        "comment_id": cid,
        "post_id": post_id,
        "post_author_id": "p",
        "author_id": "sly",
        "author_username": "sly",
        "parent_id": None,
        "body_text": BENIGN,
        "created_at": "2026-01-01T00:00:00Z",
    }
    await ai.apply("quark.comment.created", comment)
    assert await ai.outbox("quark.ai.moderation_flagged") == []

    await ai.apply("quark.comment.updated", {**comment, "body_text": TOXIC})
    flags = await ai.outbox("quark.ai.moderation_flagged")
    assert [(f["data"]["target_type"], f["data"]["target_id"]) for f in flags] == [("comment", cid)]
    mod = ai.person("mod", roles=("moderator",))
    verdicts = (await ai.client.get("/api/v1/ai/moderation", params={"target_id": cid}, headers=mod.headers)).json()
    # One verdict per version, newest first: the edit flagged, the original passed.
    assert [v["flagged"] for v in verdicts["items"]] == [True, False]
    assert verdicts["items"][0]["preview"].startswith("You are a worthless")

    # An edit back to benign text passes (the blog keeps the hidden comment for a moderator to restore).
    await ai.apply("quark.comment.updated", {**comment, "body_text": BENIGN + " Edited."})
    assert len(await ai.outbox("quark.ai.moderation_flagged")) == 1


async def test_moderator_overrules_and_it_is_recorded(ai: AI) -> None:
    author = ai.person("writer")
    post = await ai.publish_post(author, "Rant", TOXIC)
    mod = ai.person("mod", roles=("moderator",))
    [result] = (await ai.client.get("/api/v1/ai/moderation", params={"target_id": post}, headers=mod.headers)).json()[
        "items"
    ]

    # No blog is reachable here: the overrule is still recorded, and the answer says the restore failed.
    resp = await ai.client.post(
        f"/api/v1/ai/moderation/{result['id']}/review",
        headers=mod.headers,
        json={"decision": "overruled", "reason": "quoting a troll, not abuse"},
    )
    assert resp.status_code == 200, resp.text
    out = resp.json()
    assert out["decision"] == "overruled" and out["decided_by"] == mod.id
    assert out["decision_reason"] == "quoting a troll, not abuse"
    assert out["blog_restore"].startswith("failed")
    [ev] = await ai.outbox("quark.ai.moderation_reviewed")
    assert ev["data"]["decision"] == "overruled" and ev["data"]["target_id"] == post

    again = await ai.client.post(
        f"/api/v1/ai/moderation/{result['id']}/review", headers=mod.headers, json={"decision": "upheld"}
    )
    assert_problem(again, 409)
    reviewed = (await ai.client.get("/api/v1/ai/moderation", params={"reviewed": "true"}, headers=mod.headers)).json()[
        "items"
    ]
    assert [r["id"] for r in reviewed] == [result["id"]]


async def test_the_queue_decision_reviews_the_flags_it_concerns(ai: AI) -> None:
    author = ai.person("writer")
    upheld, overruled = await ai.publish_post(author, "Rant", TOXIC), await ai.publish_post(author, "Rant 2", TOXIC)
    mod = ai.person("mod", roles=("moderator",))
    flags = {f["data"]["target_id"]: f["data"]["run_id"] for f in await ai.outbox("quark.ai.moderation_flagged")}
    for target, action in ((upheld, "hide"), (overruled, "dismiss")):
        decision = {"decision_id": str(uuid.uuid4()), "case_id": str(uuid.uuid4()), "kind": "post",
                    "target_id": target, "module": "blog", "action": action, "reason": "reviewed in the queue",
                    "moderator_id": mod.id, "run_ids": [flags[target], "not-a-run"],
                    "decided_at": "2026-12-04T12:00:00+00:00"}
        await ai.apply("quark.moderation.decided", decision, consumer="signals")
        await ai.apply("quark.moderation.decided", decision, consumer="signals")  # again: reviewed once
    reviewed = {e["data"]["target_id"]: e["data"]["decision"] for e in await ai.outbox("quark.ai.moderation_reviewed")}
    assert reviewed == {upheld: "upheld", overruled: "overruled"}
    assert len(await ai.outbox("quark.ai.moderation_reviewed")) == 2
    listed = (await ai.client.get("/api/v1/ai/moderation", params={"reviewed": "true"}, headers=mod.headers)).json()
    assert {r["target_id"]: r["decided_by"] for r in listed["items"]} == {upheld: mod.id, overruled: mod.id}


async def test_moderation_and_runs_need_roles(ai: AI) -> None:
    user = ai.person("someone")
    mod = ai.person("mod", roles=("moderator",))
    assert_problem(await ai.client.get("/api/v1/ai/moderation", headers=user.headers), 403)
    assert_problem(await ai.client.get("/api/v1/ai/runs", headers=mod.headers), 403)
    assert_problem(await ai.client.get("/api/v1/ai/runs"), 401)
    assert_problem(await ai.client.get(f"/api/v1/ai/moderation/{uuid.uuid4()}", headers=mod.headers), 404)
    assert_problem(await ai.client.get("/api/v1/ai/moderation/not-a-uuid", headers=mod.headers), 404)
    assert_problem(
        await ai.client.post(
            f"/api/v1/ai/moderation/{uuid.uuid4()}/review", headers=mod.headers, json={"decision": "overruled"}
        ),
        404,
    )


async def test_with_the_real_blog_a_flag_hides_and_an_overrule_restores(quark: QuarkTestEnv) -> None:
    """The whole loop over NATS: blog publishes → AI flags → blog hides → a moderator overrules in AI → restored."""
    from quark_blog.app import module as blog_module

    blog = await quark.start(blog_module, write_rate_limit=100_000)
    ai = await start_ai(quark)
    ai.rt.blog_http = blog.client
    alice = ai.person("alice")
    resp = await blog.client.post(
        "/api/v1/posts", headers=alice.headers, json={"title": "My opinion", "body": TOXIC, "publish": True}
    )
    assert resp.status_code == 201, resp.text
    post_id = resp.json()["id"]

    mod = ai.person("mod", roles=("moderator",))

    async def hidden() -> bool:
        r = await blog.client.get(f"/api/v1/posts/{post_id}", headers=mod.headers)
        return r.status_code == 200 and r.json()["hidden"] is True

    await eventually(hidden, what="blog hid the flagged post")
    queue = (await blog.client.get("/api/v1/posts/moderation/queue", headers=mod.headers)).json()["items"]
    assert [(q["source"], q["target_id"]) for q in queue] == [("ai", post_id)]

    [result] = (
        await ai.client.get("/api/v1/ai/moderation", params={"target_id": post_id}, headers=mod.headers)
    ).json()["items"]
    r = await ai.client.post(
        f"/api/v1/ai/moderation/{result['id']}/review",
        headers=mod.headers,
        json={"decision": "overruled", "reason": "satire"},
    )
    assert r.status_code == 200 and r.json()["blog_restore"] == "restored", r.text
    post = (await blog.client.get(f"/api/v1/posts/{post_id}", headers=mod.headers)).json()
    assert post["hidden"] is False


def test_link_spam_counts_links() -> None:
    m = Moderator(0.9, list(DEFAULT_RULES), 20_000)
    five = " ".join(f"see https://example{i}.org/page and more words" for i in range(5)) + " word" * 3000
    six = " ".join(f"https://spam{i}.example" for i in range(6))
    assert m.score(five).rules == [] and not m.score(five).flagged
    assert m.score(six).rules == ["link-spam"] and m.score(six).flagged
