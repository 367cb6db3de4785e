"""The audit log: decisions and other modules' admin actions, newest first, filtered, exported."""

from __future__ import annotations

import csv
import io
import uuid

import orjson
from moderation_testkit import Moderation, assert_problem


async def test_decisions_and_admin_actions_of_other_modules_are_audited(mod: Moderation) -> None:
    root = mod.person("root", roles=("admin",))
    mia = mod.person("mia", roles=("moderator",))
    author = str(uuid.uuid4())
    await mod.report_post(mod.person("rita"), str(uuid.uuid4()), author)
    (case,) = await mod.queue(mia)
    assert (await mod.decide(mia, case["id"], "warn", reason="first warning")).status_code == 201
    role_event = await mod.emit("quark.auth.role_changed", {
        "user_id": author, "username": "troll", "role": "moderator", "action": "granted", "actor_id": root.id},
        consumer="audit")
    await mod.emit("quark.auth.role_changed", {  # delivered again: recorded once
        "user_id": author, "username": "troll", "role": "moderator", "action": "granted", "actor_id": root.id},
        consumer="audit", event_id=role_event)
    await mod.emit("quark.user.suspended", {"user_id": author, "suspended": True, "reason": "spam",
                                            "actor_id": root.id}, consumer="audit")

    r = await mod.client.get("/api/v1/moderation/audit", headers=root.headers)
    assert r.status_code == 200, r.text
    entries = r.json()["items"]
    assert [(e["action"], e["actor_id"]) for e in entries] == [
        ("user.suspended", root.id), ("auth.role_changed", root.id), ("moderation.warn", mia.id)]
    warn = entries[2]
    assert (warn["target_kind"], warn["reason"], warn["details"]["case_id"]) == ("post",
                                                                                  "first warning", case["id"])
    assert entries[1]["details"]["role"] == "moderator" and entries[1]["target_id"] == author

    only = (await mod.client.get("/api/v1/moderation/audit", params={"action": "moderation"},
                                 headers=root.headers)).json()["items"]
    assert [e["action"] for e in only] == ["moderation.warn"]
    by_actor = (await mod.client.get("/api/v1/moderation/audit", params={"actor_id": mia.id, "limit": 1},
                                     headers=root.headers)).json()
    assert len(by_actor["items"]) == 1 and by_actor["next_cursor"] is None
    page1 = (await mod.client.get("/api/v1/moderation/audit", params={"limit": 2}, headers=root.headers)).json()
    page2 = (await mod.client.get("/api/v1/moderation/audit", params={"limit": 2, "cursor": page1["next_cursor"]},
                                  headers=root.headers)).json()
    assert [e["seq"] for e in page1["items"] + page2["items"]] == [e["seq"] for e in entries]


async def test_forced_resets_thresholds_and_hub_operations_are_audited(mod: Moderation) -> None:
    root = mod.person("root", roles=("admin",))
    user = str(uuid.uuid4())
    await mod.emit("quark.auth.password_reset_forced", {"user_id": user, "username": "kim", "actor_id": root.id,
                                                        "reason": "leaked password", "revoked": 3}, consumer="audit")
    await mod.emit("quark.ai.thresholds_changed", {"actor_id": root.id, "reason": "too strict", "threshold": 0.8,
                                                   "previous_threshold": 0.7, "rule_scores": {},
                                                   "previous_rule_scores": {}}, consumer="audit")
    await mod.emit("quark.hub.module.disabled", {"module": "bookmarks", "actor_id": root.id}, consumer="audit")
    await mod.emit("quark.hub.dead_letter_replayed", {"actor_id": root.id, "stream": "QUARK_DLQ", "seq": 7},
                   consumer="audit")
    entries = (await mod.client.get("/api/v1/moderation/audit", headers=root.headers)).json()["items"]
    assert [(e["action"], e["actor_id"]) for e in entries] == [
        ("hub.dead_letter_replayed", root.id), ("hub.module.disabled", root.id), ("ai.thresholds_changed", root.id),
        ("auth.password_reset_forced", root.id)]
    assert entries[1]["target_kind"] == "module" and entries[1]["target_id"] == "bookmarks"
    assert entries[3]["target_id"] == user and entries[3]["reason"] == "leaked password"


async def test_export_as_csv_and_json_lines(mod: Moderation) -> None:
    root = mod.person("root", roles=("admin",))
    await mod.emit("quark.auth.sessions_revoked", {"user_id": str(uuid.uuid4()), "reason": "admin",
                                                   "actor_id": root.id, "revoked": 2}, consumer="audit")
    await mod.emit("quark.user.suspended", {"user_id": str(uuid.uuid4()), "suspended": True,
                                            "reason": "=HYPERLINK(\"http://evil\")", "actor_id": root.id},
                   consumer="audit")
    r = await mod.client.get("/api/v1/moderation/audit/export", params={"format": "csv", "module": "user"},
                             headers=root.headers)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    assert "attachment" in r.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert [row["action"] for row in rows] == ["user.suspended"]
    assert rows[0]["reason"].startswith("'=")  # a spreadsheet shows it as text, never runs it

    r = await mod.client.get("/api/v1/moderation/audit/export", params={"format": "jsonl"}, headers=root.headers)
    lines = [orjson.loads(x) for x in r.content.splitlines()]
    # newest first; every export is itself in the log (this one, then the CSV one)
    assert [x["action"] for x in lines] == ["moderation.audit_exported", "moderation.audit_exported",
                                            "user.suspended", "auth.sessions_revoked"]
    assert lines[0]["details"] == {"format": "jsonl"} and lines[0]["actor_id"] == root.id


async def test_bad_filters_are_refused(mod: Moderation) -> None:
    root = mod.person("root", roles=("admin",))
    for params in ({"since": "yesterday"}, {"since": "2026-01-02T00:00:00Z", "until": "2026-01-01T00:00:00Z"},
                   {"cursor": "zzz"}, {"actor_id": "x" * 200}):
        assert_problem(await mod.client.get("/api/v1/moderation/audit", params=params, headers=root.headers), 422)
    assert_problem(await mod.client.get("/api/v1/moderation/audit/export", params={"format": "xml"},
                                        headers=root.headers), 422)
