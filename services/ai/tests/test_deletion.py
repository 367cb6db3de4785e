"""Account deletion erases the person from the AI service (#16 item 7): no text of theirs, no id of theirs.

The person leaves traces in every table: a draft (its topic), an assist, recommendations, a moderated
comment (its preview), a post (document, tagging and related runs), reactions, follows, a block, a
mute, a moderator's review. After quark.user.deleted, every row of every table of the module is read
back as text: neither their words nor their id may appear, except the bare fact that the account is
deleted (one `authors` row). Someone else's rows survive untouched.
"""

from __future__ import annotations

from datetime import UTC, datetime

from ai_testkit import AI
from sqlalchemy import text

from quark_ai.models import Base

MARKER = "zorblaxian"  # a word nobody else writes


async def rows_mentioning(ai: AI, needle: str) -> dict[str, int]:
    found: dict[str, int] = {}
    async with ai.svc.ctx.database().session() as session:
        for table in Base.metadata.sorted_tables:
            count = await session.scalar(
                text(f'SELECT count(*) FROM "{table.name}" t WHERE t::text ILIKE :needle'),  # noqa: S608 - our tables
                {"needle": f"%{needle}%"},
            )
            if count:
                found[table.name] = int(count)
    return found


async def test_deleted_account_leaves_no_text_and_no_id_in_the_ai_service(ai: AI) -> None:
    gone, other, mod = ai.person("gone"), ai.person("other"), ai.person("mod", roles=("moderator",))
    at = datetime.now(UTC).isoformat()
    resp = await ai.client.post(
        "/api/v1/ai/drafts", json={"topic": f"my {MARKER} garden diary"}, headers=gone.headers
    )
    assert resp.status_code == 201, resp.text
    resp = await ai.client.post(
        "/api/v1/ai/assist", json={"text": f"The {MARKER} tomatoes grew tall this year."}, headers=gone.headers
    )
    assert resp.status_code == 200, resp.text
    theirs = await ai.publish_post(gone, f"The {MARKER} tomato garden", f"Tomatoes {MARKER} compost and sun.")
    others = await ai.publish_post(other, "Tomato garden basics", "Tomatoes need compost, water and sun.")
    await ai.react(gone, others)
    await ai.follow(gone, other)
    await ai.follow(other, gone)
    await ai.apply("quark.user.blocked", {"blocker_id": gone.id, "blocked_id": mod.id, "at": at}, consumer="signals")
    await ai.apply("quark.user.muted", {"muter_id": other.id, "muted_id": gone.id, "at": at}, consumer="signals")
    comment = {"comment_id": "c-gone", "post_id": others, "post_author_id": other.id, "author_id": gone.id,
               "author_username": "gone", "parent_id": None, "body_text": f"You are a {MARKER} idiot and worthless",
               "created_at": at}
    await ai.apply("quark.comment.created", comment)
    assert (await ai.client.get("/api/v1/ai/recommendations", headers=gone.headers)).status_code == 200
    # They also reviewed a verdict as a moderator (their id as the reviewer).
    await ai.apply("quark.comment.created", {**comment, "comment_id": "c-other", "author_id": other.id,
                                             "body_text": "You are a stupid idiot and worthless"})
    as_moderator = ai.quark.bearer(ai.quark.user_token(gone.id, username="gone", roles=("moderator",)))
    queue = (await ai.client.get("/api/v1/ai/moderation", params={"target_id": "c-other"},
                                 headers=mod.headers)).json()["items"]
    resp = await ai.client.post(f"/api/v1/ai/moderation/{queue[0]['id']}/review",
                                json={"decision": "upheld"}, headers=as_moderator)
    assert resp.status_code == 200, resp.text

    before = await rows_mentioning(ai, MARKER)
    assert {"drafts", "documents", "moderation_results"} <= set(before), before  # the probe sees them
    assert {"agent_runs", "reactions", "follows", "blocks", "mutes"} <= set(await rows_mentioning(ai, gone.id))
    others_before = await rows_mentioning(ai, other.id)

    await ai.apply("quark.user.deleted", {"user_id": gone.id}, consumer="signals")

    assert await rows_mentioning(ai, MARKER) == {}
    assert await rows_mentioning(ai, gone.id) == {"authors": 1}  # only: this account is deleted
    # Other people keep their own rows (their post, their verdict, their runs).
    others_after = await rows_mentioning(ai, other.id)
    for table in ("documents", "moderation_results", "agent_runs"):
        assert others_after.get(table) == others_before.get(table), (table, others_before, others_after)
    # The verdicts themselves stay for the moderators' audit, without author or text.
    async with ai.svc.ctx.database().session() as session:
        verdict = (await session.execute(
            text("SELECT author_id, preview, flagged FROM moderation_results WHERE target_id = 'c-gone'")
        )).one()
    assert verdict.author_id is None and verdict.preview == "" and verdict.flagged is True
    assert theirs not in [r["post_id"] for r in (
        await ai.client.get("/api/v1/ai/recommendations", headers=other.headers)).json()["items"]]
