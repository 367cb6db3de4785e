"""Recommendations obey every visibility rule of the blog (#16 item 1), kept current from events.

One test per rule: blocks (either way), profile privacy, post visibility, suspension, deletion,
hidden; and mutes. Each publishes the events exactly as the user and blog modules send them.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from ai_testkit import AI, Person, start_ai

from quark_sdk.testing import QuarkTestEnv

GARDEN = ("Growing tomatoes in raised garden beds", "Tomatoes love sun, water and compost in the garden bed.")
KUBE = ("Debugging Kubernetes network policies", "A pod cannot reach the service: check the network policy.")


def now() -> str:
    return datetime.now(UTC).isoformat()


async def recommended(ai: AI, who: Person) -> list[str]:
    resp = await ai.client.get("/api/v1/ai/recommendations", headers=who.headers)
    assert resp.status_code == 200, resp.text
    return [i["post_id"] for i in resp.json()["items"]]


async def signal(ai: AI, type_name: str, data: dict[str, Any]) -> None:
    await ai.apply(type_name, data, consumer="signals")


def profile(user: Person, privacy: str) -> dict[str, Any]:
    """quark.user.profile_updated as the user module sends it (ProfileUpdated)."""
    return {
        "user_id": user.id,
        "username": user.username,
        "display_name": None,
        "bio": "",
        "avatar": None,
        "privacy": privacy,
        "links": [],
        "locale": None,
        "changed": ["privacy"],
    }


async def test_a_block_hides_posts_both_ways_until_lifted(ai: AI) -> None:
    a, b = ai.person("a"), ai.person("b")
    from_a = await ai.publish_post(a, *GARDEN)
    from_b = await ai.publish_post(b, *KUBE)
    await ai.follow(b, a)
    assert from_a in await recommended(ai, b)

    await signal(ai, "quark.user.blocked", {"blocker_id": a.id, "blocked_id": b.id, "at": now()})
    assert from_a not in await recommended(ai, b)  # the blocked one no longer sees the blocker's posts
    assert from_b not in await recommended(ai, a)  # nor the blocker the blocked one's

    await signal(ai, "quark.user.unblocked", {"blocker_id": a.id, "blocked_id": b.id, "at": now()})
    assert from_a in await recommended(ai, b) and from_b in await recommended(ai, a)


async def test_a_followers_only_profile_hides_its_public_posts_from_non_followers(ai: AI) -> None:
    a, follower, stranger = ai.person("a"), ai.person("follower"), ai.person("stranger")
    post = await ai.publish_post(a, *GARDEN)
    await ai.follow(follower, a)

    await signal(ai, "quark.user.profile_updated", profile(a, "followers"))
    assert post not in await recommended(ai, stranger)
    assert post in await recommended(ai, follower)

    await signal(ai, "quark.user.profile_updated", profile(a, "public"))
    assert post in await recommended(ai, stranger)


async def test_a_suspended_authors_posts_are_not_recommended_until_reinstated(ai: AI) -> None:
    a, reader, admin = ai.person("a"), ai.person("reader"), ai.person("root")
    post = await ai.publish_post(a, *GARDEN)
    await ai.follow(reader, a)
    suspended = {"user_id": a.id, "suspended": True, "reason": "spam", "actor_id": admin.id}

    await signal(ai, "quark.user.suspended", suspended)
    assert post not in await recommended(ai, reader)

    await signal(ai, "quark.user.suspended", {**suspended, "suspended": False, "reason": None})
    assert post in await recommended(ai, reader)


async def test_a_post_made_private_is_not_recommended_from_a_model_fitted_before(quark: QuarkTestEnv) -> None:
    ai = await start_ai(quark, corpus_refresh=3600.0)  # the model is not refitted: new posts are added to it
    a, reader = ai.person("a"), ai.person("reader")
    post = await ai.publish_post(a, *GARDEN)
    await ai.publish_post(a, *KUBE)
    assert post in await recommended(ai, reader)

    updated = {
        "post_id": post, "author_id": a.id, "title": GARDEN[0], "slug": "garden", "excerpt": "", "body_text": GARDEN[1],
        "tags": [], "category": None, "visibility": "private", "media_ids": [], "updated_at": now(),
    }
    await ai.apply("quark.post.updated", updated)
    assert post not in await recommended(ai, reader)
    await ai.apply("quark.post.updated", {**updated, "visibility": "followers"})
    assert post not in await recommended(ai, reader)
    await ai.follow(reader, a)
    assert post in await recommended(ai, reader)


async def test_a_hidden_post_is_not_recommended_from_a_model_fitted_before(quark: QuarkTestEnv) -> None:
    ai = await start_ai(quark, corpus_refresh=3600.0)
    a, reader = ai.person("a"), ai.person("reader")
    post = await ai.publish_post(a, *GARDEN)
    assert post in await recommended(ai, reader)
    await ai.apply("quark.post.hidden", {"post_id": post, "author_id": a.id, "actor_id": None, "reason": "flag"})
    assert post not in await recommended(ai, reader)
    await ai.apply("quark.post.restored", {"post_id": post, "author_id": a.id, "actor_id": None, "reason": None})
    assert post in await recommended(ai, reader)


async def test_posts_of_a_deleted_account_stay_gone_when_their_events_arrive_late(ai: AI) -> None:
    a, reader = ai.person("a"), ai.person("reader")
    post = await ai.publish_post(a, *GARDEN)
    await signal(ai, "quark.user.deleted", {"user_id": a.id})
    assert post not in await recommended(ai, reader)
    # The post events travel on another consumer than quark.user.deleted: one may come after it.
    late = await ai.publish_post(a, *KUBE)
    assert late not in await recommended(ai, reader)


async def test_a_muted_author_is_not_recommended_to_the_muter(ai: AI) -> None:
    a, reader, other = ai.person("a"), ai.person("reader"), ai.person("other")
    post = await ai.publish_post(a, *GARDEN)
    await signal(ai, "quark.user.muted", {"muter_id": reader.id, "muted_id": a.id, "at": now()})
    assert post not in await recommended(ai, reader)
    assert post in await recommended(ai, other)  # a mute is the muter's alone
    await signal(ai, "quark.user.unmuted", {"muter_id": reader.id, "muted_id": a.id, "at": now()})
    assert post in await recommended(ai, reader)


async def test_related_posts_leave_out_closed_and_suspended_authors(ai: AI) -> None:
    closed, suspended, open_, writer = ai.person("closed"), ai.person("gone"), ai.person("open"), ai.person("w")
    from_closed = await ai.publish_post(closed, "Tomato garden compost", "Tomatoes, compost and garden soil.")
    from_suspended = await ai.publish_post(suspended, "Tomato garden watering", "Water tomatoes in the garden.")
    from_open = await ai.publish_post(open_, "Tomato garden staking", "Stake tomatoes in the garden bed.")
    await signal(ai, "quark.user.profile_updated", profile(closed, "followers"))
    await signal(ai, "quark.user.suspended", {"user_id": suspended.id, "suspended": True, "reason": None,
                                             "actor_id": writer.id})
    await ai.publish_post(writer, "Tomato garden basics", "Tomatoes need sun, compost, water and a garden.")
    events = await ai.outbox("quark.ai.suggestion_generated")
    related = [e["data"] for e in events if e["data"]["kind"] == "related_posts"]
    last = related[-1]["items"]
    assert from_open in last
    assert from_closed not in last and from_suspended not in last
