"""The queue: reports and flags from every module meet in one list of cases, grouped by target, oldest first."""

from __future__ import annotations

import uuid

from moderation_testkit import Moderation, assert_problem


async def test_reports_and_flags_from_every_module_meet_in_one_queue(mod: Moderation) -> None:
    alice, bob = mod.person("alice"), mod.person("bob")
    moderator = mod.person("mia", roles=("user", "moderator"))
    author = str(uuid.uuid4())
    post_id, comment_id, message_id = str(uuid.uuid4()), str(uuid.uuid4()), "42"
    await mod.report_message(alice, message_id, author)
    await mod.report_post(alice, comment_id, author, target_type="comment")
    await mod.flag(post_id, author_id=author)
    await mod.report_post(bob, post_id, author)  # a user report on the flagged post joins its case
    await mod.emit("quark.user.profile_reported", {"report_id": "r1", "user_id": author, "username": "troll",
                                                   "bio": "buy pills", "reporter_id": bob.id, "reason": "spam"})
    await mod.emit("quark.media.reported", {"report_id": "m1", "media_id": "med-1", "owner_id": author,
                                            "reporter_id": bob.id, "reason": "gore"})

    cases = await mod.queue(moderator)
    assert [(c["kind"], c["target_id"]) for c in cases] == [
        ("chat_message", message_id), ("comment", comment_id), ("post", post_id), ("profile", author),
        ("media", "med-1")]  # oldest first
    post_case = cases[2]
    assert (post_case["reports"], post_case["flags"], post_case["max_score"]) == (1, 1, 0.93)
    assert post_case["author_id"] == author and post_case["module"] == "blog"
    assert cases[0]["preview"] == "threat"  # the reported message, not its neighbours

    assert [c["kind"] for c in await mod.queue(moderator, source="ai")] == ["post"]
    assert [c["kind"] for c in await mod.queue(moderator, kind="chat_message")] == ["chat_message"]
    assert await mod.queue(moderator, state="dismissed") == []

    page1 = (await mod.client.get("/api/v1/moderation/cases", params={"limit": 2}, headers=moderator.headers)).json()
    page2 = (await mod.client.get("/api/v1/moderation/cases", params={"limit": 2, "cursor": page1["next_cursor"]},
                                  headers=moderator.headers)).json()
    assert [c["id"] for c in page1["items"] + page2["items"]] == [c["id"] for c in cases[:4]]

    detail = (await mod.client.get(f"/api/v1/moderation/cases/{post_case['id']}", headers=moderator.headers)).json()
    assert [s["source"] for s in detail["signals"]] == ["ai", "user"]
    assert detail["signals"][0]["labels"] == ["toxic"]
    assert detail["allowed_actions"] == ["dismiss", "hide", "delete", "warn", "suspend"]
    chat = (await mod.client.get(f"/api/v1/moderation/cases/{cases[0]['id']}", headers=moderator.headers)).json()
    assert [line["body"] for line in chat["context"]["thread"]] == ["hi", "threat"]


async def test_a_signal_delivered_twice_or_a_second_report_by_the_same_person_counts_once(mod: Moderation) -> None:
    alice = mod.person("alice")
    moderator = mod.person("mia", roles=("moderator",))
    post_id, author, run = str(uuid.uuid4()), str(uuid.uuid4()), str(uuid.uuid4())
    await mod.flag(post_id, author_id=author, run_id=run)
    await mod.flag(post_id, author_id=author, run_id=run)  # the same verdict, re-sent under another event id
    await mod.report_post(alice, post_id, author)
    await mod.report_post(alice, post_id, author)  # another report id, same person, same open case
    (case,) = await mod.queue(moderator)
    assert (case["flags"], case["reports"]) == (1, 1)


async def test_filters_and_cursor_are_checked(mod: Moderation) -> None:
    moderator = mod.person("mia", roles=("moderator",))
    for params in ({"kind": "tweet"}, {"state": "closed"}, {"source": "robot"}, {"cursor": "garbage"},
                   {"limit": 0}):
        assert_problem(await mod.client.get("/api/v1/moderation/cases", params=params, headers=moderator.headers),
                       422)
    assert_problem(await mod.client.get(f"/api/v1/moderation/cases/{uuid.uuid4()}", headers=moderator.headers), 404)
    assert_problem(await mod.client.get("/api/v1/moderation/cases/not-a-uuid", headers=moderator.headers), 422)


async def test_a_malformed_report_is_dead_lettered_and_the_queue_goes_on(mod: Moderation) -> None:
    moderator = mod.person("mia", roles=("moderator",))
    await mod.emit("quark.media.reported", {"media_id": "x"}, wait=False)  # never fits: dead-lettered
    await mod.emit("quark.media.reported", {"report_id": "m2", "media_id": "med-2", "reporter_id": "u",
                                            "reason": "spam"})
    assert [c["target_id"] for c in await mod.queue(moderator)] == ["med-2"]
