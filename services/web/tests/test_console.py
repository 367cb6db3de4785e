"""The console's moderation pages against the real auth, user, blog and moderation modules: a reported comment
reaches the queue, a moderator hides it through the case page, the decision is in the audit log; people
without the role get a 403 page on every console route."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from webkit import Station, sign_up, start_station, wait_profile

from quark_auth.admin import grant_role
from quark_sdk.testing import QuarkTestEnv, eventually


@pytest.fixture
async def station(quark: QuarkTestEnv, tmp_path: Path) -> AsyncIterator[Station]:
    s = await start_station(quark, tmp_path, with_media=False, with_moderation=True)
    try:
        yield s
    finally:
        await s.close()


async def _grant(station: Station, user_id: str, role: str) -> None:
    import uuid

    ctx = station.ctx("auth")
    async with ctx.database().session() as session:
        await grant_role(session, ctx.runtime, "cli", uuid.UUID(user_id), role)


async def test_report_reaches_the_queue_and_a_moderator_hides_it(station: Station) -> None:
    alice, bob, mia = station.browser(), station.browser(), station.browser()
    await sign_up(station, alice, "alice")
    bob_id = await sign_up(station, bob, "bob")
    mia_id = await sign_up(station, mia, "mia")
    await wait_profile(station, "bob")
    api = station.api()
    post = await api.post("/api/v1/posts", json={"title": "Hello", "body": "words", "publish": True},
                          headers=await _bearer(station, "alice"))
    assert post.status_code == 201, post.text
    comment = await api.post(f"/api/v1/posts/{post.json()['id']}/comments", json={"body": "you idiot"},
                             headers=await _bearer(station, "bob"))
    assert comment.status_code == 201, comment.text
    report = await api.post(f"/api/v1/comments/{comment.json()['id']}/report", json={"reason": "insult"},
                            headers=await _bearer(station, "alice"))
    assert report.status_code == 201, report.text

    for path in ("/console/moderation", "/console/audit"):
        assert (await alice.get(path)).status_code == 403  # no role, no console
    await _grant(station, mia_id, "admin")
    await mia.post("/logout", {})
    # a fresh sign-in carries the new role
    await mia.get("/login")
    assert (await mia.post("/login", {"login": "mia", "password": _password()})).status_code == 303

    async def listed() -> str | None:
        page = await mia.get("/console/moderation")
        return page.text if "you idiot" in page.text else None

    text = await eventually(listed, what="the report in the queue")
    case_id = re.search(r'data-case="([0-9a-f-]+)"', text).group(1)  # type: ignore[union-attr]
    case = await mia.get(f"/console/moderation/{case_id}")
    assert case.status_code == 200 and "you idiot" in case.text
    decision = re.search(r'name="decision_id" value="([0-9a-f-]+)"', case.text).group(1)  # type: ignore[union-attr]
    done = await mia.post(f"/console/moderation/{case_id}/decide",
                          {"action": "hide", "reason": "insults", "decision_id": decision})
    assert done.status_code == 303
    assert 'data-decision="hide"' in (await mia.get(f"/console/moderation/{case_id}")).text

    async def hidden() -> bool:
        c = await api.get(f"/api/v1/comments/{comment.json()['id']}")
        return c.status_code == 404 or c.json().get("state") == "hidden"

    await eventually(hidden, what="the comment hidden by the blog")
    audit = await mia.get("/console/audit")
    assert 'data-action="moderation.hide"' in audit.text
    # the report button on a profile (HTMX answers a small status fragment)
    reported = await alice.htmx("/report/profile/bob", {"reason": "impersonation"})
    assert reported.status_code == 200 and "reported" in reported.text
    profile_page = await mia.get("/people/bob")
    assert 'action="/report/profile/bob"' in profile_page.text

    async def profile_case() -> bool:
        return "@bob" in (await mia.get("/console/moderation?kind=profile")).text

    await eventually(profile_case, what="the profile report in the queue")
    export = await mia.get("/console/audit/export.csv")
    assert export.status_code == 200 and "moderation.hide" in export.text
    assert bob_id


def _password() -> str:
    from webkit import PASSWORD

    return PASSWORD


async def _bearer(station: Station, username: str) -> dict[str, str]:
    tokens = await station.api().post("/api/v1/auth/login", json={"login": username, "password": _password()})
    assert tokens.status_code == 200, tokens.text
    return {"Authorization": f"Bearer {tokens.json()['access_token']}"}
