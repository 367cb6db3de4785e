"""Recommendations (TF-IDF content similarity + reactions + follows) and the tagging agent."""

from __future__ import annotations

from ai_testkit import AI, assert_problem, start_ai

from quark_sdk.testing import QuarkTestEnv

TOMATO = (
    "Growing tomatoes in raised garden beds",
    "Tomatoes love sun. Water the tomato plants deeply, mulch the garden bed and feed the soil with compost. "
    "Prune tomato suckers and stake the tomatoes early in the garden season.",
)
TOMATO_2 = (
    "Watering and staking tomato plants",
    "How often to water tomatoes in a hot summer garden, when to stake tomato plants, and which compost "
    "keeps garden soil rich for tomatoes.",
)
KUBE = (
    "Debugging Kubernetes network policies",
    "A pod cannot reach the service: check the namespace network policy, the CNI plugin, kube-proxy "
    "iptables rules and DNS resolution inside the cluster.",
)
RUST = (
    "Rust lifetimes explained",
    "Borrow checker errors, lifetime annotations, and why the compiler rejects references that outlive "
    "their owners in Rust programs.",
)


async def test_similar_post_ranks_above_unrelated_one(ai: AI) -> None:
    writer, other = ai.person("writer"), ai.person("other")
    reader = ai.person("reader")
    liked = await ai.publish_post(writer, *TOMATO)
    similar = await ai.publish_post(other, *TOMATO_2)
    unrelated = await ai.publish_post(other, *KUBE)
    await ai.react(reader, liked)

    resp = await ai.client.get("/api/v1/ai/recommendations", headers=reader.headers)
    assert resp.status_code == 200, resp.text
    items = resp.json()["items"]
    order = [i["post_id"] for i in items]
    assert liked not in order  # already seen
    assert order.index(similar) < order.index(unrelated)
    top = items[0]
    assert top["post_id"] == similar and top["similarity"] > 0.1
    assert "similar to posts you reacted to" in top["reasons"] and top["title"] == TOMATO_2[0]

    # The suggestion event goes out once per change, not on every read.
    await ai.client.get("/api/v1/ai/recommendations", headers=reader.headers)
    events = await ai.outbox("quark.ai.suggestion_generated")
    recs = [e["data"] for e in events if e["data"]["kind"] == "recommendations"]
    assert len(recs) == 1 and recs[0]["user_id"] == reader.id and recs[0]["items"][0] == similar

    # Each request is a recorded run.
    admin = ai.person("root", roles=("admin",))
    runs = (
        await ai.client.get(
            "/api/v1/ai/runs", params={"agent": "recommendations", "input_id": reader.id}, headers=admin.headers
        )
    ).json()["items"]
    assert len(runs) == 2 and runs[0]["detail"]["signals"] == {"reactions": 1, "follows": 0}


async def test_follows_lift_a_followed_authors_posts(ai: AI) -> None:
    a, b = ai.person("a"), ai.person("b")
    reader = ai.person("reader")
    from_a = await ai.publish_post(a, *KUBE)
    from_b = await ai.publish_post(b, *RUST)
    await ai.follow(reader, a)
    items = (await ai.client.get("/api/v1/ai/recommendations", headers=reader.headers)).json()["items"]
    assert [i["post_id"] for i in items][:2] == [from_a, from_b]
    assert "from someone you follow" in items[0]["reasons"]
    # Unfollowing takes the boost away; the newest post leads again.
    await ai.apply("quark.user.unfollowed", {"follower_id": reader.id, "followee_id": a.id}, consumer="signals")
    items = (await ai.client.get("/api/v1/ai/recommendations", headers=reader.headers)).json()["items"]
    assert items[0]["post_id"] == from_b


async def test_hidden_deleted_and_followers_only_posts_are_not_recommended(ai: AI) -> None:
    writer, reader = ai.person("writer"), ai.person("reader")
    hidden = await ai.publish_post(writer, *TOMATO)
    deleted = await ai.publish_post(writer, *TOMATO_2)
    private = await ai.publish_post(writer, *KUBE, visibility="followers")
    shown = await ai.publish_post(writer, *RUST)
    await ai.apply("quark.post.hidden", {"post_id": hidden, "author_id": writer.id, "actor_id": None, "reason": "x"})
    await ai.apply("quark.post.deleted", {"post_id": deleted, "author_id": writer.id})
    items = (await ai.client.get("/api/v1/ai/recommendations", headers=reader.headers)).json()["items"]
    assert [i["post_id"] for i in items] == [shown]
    await ai.follow(reader, writer)
    items = (await ai.client.get("/api/v1/ai/recommendations", headers=reader.headers)).json()["items"]
    assert {i["post_id"] for i in items} == {shown, private}


async def test_pagination_of_recommendations(ai: AI) -> None:
    writer, reader = ai.person("writer"), ai.person("reader")
    posts = [
        await ai.publish_post(writer, f"Post {i} about gardening", f"Garden note {i}: tomatoes and soil.")
        for i in range(5)
    ]
    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = (await ai.client.get("/api/v1/ai/recommendations", params=params, headers=reader.headers)).json()
        seen += [i["post_id"] for i in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert sorted(seen) == sorted(posts) and len(seen) == 5
    assert_problem(
        await ai.client.get("/api/v1/ai/recommendations", params={"cursor": "!!"}, headers=reader.headers), 422
    )
    assert_problem(await ai.client.get("/api/v1/ai/recommendations"), 401)


async def test_tagging_and_related_posts_suggestions(ai: AI) -> None:
    writer = ai.person("writer")
    first = await ai.publish_post(writer, *TOMATO, tags=["garden"])
    second = await ai.publish_post(writer, *TOMATO_2)
    events = [e["data"] for e in await ai.outbox("quark.ai.suggestion_generated")]
    tags = {e["target_id"]: e for e in events if e["kind"] == "tags"}
    assert "tomatoes" in tags[first]["items"] and "garden" not in tags[first]["items"]  # already a tag
    assert tags[first]["user_id"] == writer.id
    related = [e for e in events if e["kind"] == "related_posts"]
    assert related and related[-1]["target_id"] == second and related[-1]["items"] == [first]


async def test_between_refits_hidden_posts_drop_out_and_new_posts_are_related(quark: QuarkTestEnv) -> None:
    ai = await start_ai(quark, corpus_refresh=3600)  # the model is fitted once and kept
    writer, reader = ai.person("writer"), ai.person("reader")
    tomato = await ai.publish_post(writer, *TOMATO)
    kube = await ai.publish_post(writer, *KUBE)
    items = (await ai.client.get("/api/v1/ai/recommendations", headers=reader.headers)).json()["items"]
    assert {i["post_id"] for i in items} == {tomato, kube}
    await ai.apply("quark.post.hidden", {"post_id": tomato, "author_id": writer.id, "actor_id": None, "reason": "x"})
    items = (await ai.client.get("/api/v1/ai/recommendations", headers=reader.headers)).json()["items"]
    assert [i["post_id"] for i in items] == [kube]
    await ai.apply("quark.post.restored", {"post_id": tomato, "author_id": writer.id, "actor_id": "m", "reason": None})
    newer = await ai.publish_post(writer, *TOMATO_2)  # not in the fitted corpus: related through its vocabulary
    related = [
        e["data"]
        for e in await ai.outbox("quark.ai.suggestion_generated")
        if e["data"]["kind"] == "related_posts" and e["data"]["target_id"] == newer
    ]
    assert related and related[0]["items"][0] == tomato


async def test_a_deleted_user_is_forgotten(ai: AI) -> None:
    writer, reader = ai.person("writer"), ai.person("reader")
    await ai.publish_post(writer, *TOMATO)
    other = await ai.publish_post(reader, *KUBE)
    await ai.follow(reader, writer)
    await ai.apply("quark.user.deleted", {"user_id": writer.id}, consumer="signals")
    items = (await ai.client.get("/api/v1/ai/recommendations", headers=reader.headers)).json()["items"]
    assert items == []  # the writer's posts are gone; the reader's own post is never recommended to them
    async with ai.svc.ctx.database().session() as session:
        from sqlalchemy import text

        follows = (await session.execute(text("SELECT count(*) FROM follows"))).scalar()
        docs = [r[0] for r in await session.execute(text("SELECT post_id FROM documents"))]
    assert follows == 0 and docs == [other]
