"""The media service and the user service together, on one NATS namespace, through real events only.

The avatar flow end to end: upload (purpose=avatar) → choose it on the profile → the user service
fills in the variant URLs from `quark.media.processed` → its `quark.user.profile_updated` marks the
media attached here → deleting the media clears the avatar there (`quark.media.deleted`).
"""

import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from media_testkit import API, jpeg, start

from quark_sdk.testing import QuarkTestEnv, eventually
from quark_user.app import module as user_module


async def test_avatar_flow_across_media_and_user(quark: QuarkTestEnv, tmp_path: Path) -> None:
    h = await start(quark, tmp_path)
    users = await quark.start(user_module)
    uid = uuid.uuid4()
    token = quark.user_token(str(uid), username="alice")
    alice_headers = quark.bearer(token)
    await h.publish(
        "quark.auth.user_registered",
        {
            "user_id": str(uid),
            "username": "alice",
            "email": "alice@example.com",
            "display_name": "Alice",
            "roles": ["user"],
            "created_at": datetime.now(UTC).isoformat(),
        },
    )

    async def profile() -> dict[str, Any] | None:
        resp = await users.client.get("/api/v1/users/alice")
        return dict(resp.json()) if resp.status_code == 200 else None

    await eventually(profile, what="profile created from the auth event")

    created = (
        await h.client.post(
            API, files={"file": ("me.jpg", jpeg(), "image/jpeg")}, data={"purpose": "avatar"}, headers=alice_headers
        )
    ).json()
    media_id = created["id"]
    chosen = await users.client.patch("/api/v1/users/me", json={"avatar_media_id": media_id}, headers=alice_headers)
    assert chosen.status_code == 200, chosen.text

    async def avatar() -> dict[str, Any] | None:
        p = await profile()
        return p["avatar"] if p and p["avatar"] else None

    got = await eventually(avatar, timeout=30, what="avatar applied from quark.media.processed")
    assert got["media_id"] == media_id
    assert set(got["variants"]) == {"thumb", "medium", "original"}
    thumb = await h.client.get(got["variants"]["thumb"])  # the URLs the user service keeps work
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/webp"

    async def attached() -> bool:
        body = (await h.client.get(f"{API}/{media_id}", headers=alice_headers)).json()
        return bool(body["attached"])

    await eventually(attached, what="media attached from quark.user.profile_updated")

    assert (await h.client.delete(f"{API}/{media_id}", headers=alice_headers)).status_code == 204

    async def cleared() -> bool:
        p = await profile()
        return p is not None and p["avatar"] is None

    await eventually(cleared, what="avatar cleared by quark.media.deleted")
