"""The station's main journey, end to end over HTTP and WebSocket, in embedded mode and in fleet mode.

register → verify email → login with 2FA → edit profile with an avatar upload → follow → publish a post
with an image → the follower sees it in the home timeline → comment and react → the author gets a live
notification over WebSocket → a direct message round trip (REST one way, WebSocket the other) → the AI
moderator flags a toxic comment and the blog hides it → an admin restores it → account deletion
propagates to every service (profile, posts' comments and reactions, media, chats).
Every hop between services is an event on NATS, so the journey only passes when the outbox, the relays
and the durable consumers of every module work together.
"""

from __future__ import annotations

import asyncio
import html
import io
import json
import re
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import jsonschema
import nats
import pyotp
import pytest
import websockets
import yaml
from PIL import Image
from stationkit import PASSWORD, Client, Person, Station, client

from quark_sdk.testing import eventually, read_stream

pytestmark = pytest.mark.timeout(600)  # the first test of a mode also starts its station (up to 240 s)


async def verified_user(c: Client, station: Station, name: str) -> Person:
    person = await c.register(name)
    # As a person does: the mail is in the dev mailbox (the mailer sent it to quark dev's SMTP sink); its
    # link opens the web client's confirmation page, whose button (a POST with the page's CSRF token)
    # confirms the address; opening the link alone confirms nothing.
    link = await station.mailed_link(c.http, person.email, "/verify-email")
    page = await c.http.get(station.url(link))
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html"), page.text[:300]
    await c.login(person)
    assert (await c.get("/api/v1/auth/me", person, expect=200)).json()["email_verified"] is False
    fields = dict(re.findall(r'<input type="hidden" name="([a-z_]+)" value="([^"]*)"', page.text))
    done = await c.http.post(station.url("/verify-email"), data={k: html.unescape(v) for k, v in fields.items()})
    assert done.status_code == 200 and 'data-ok="true"' in done.text, done.text[:500]
    await c.login(person)
    me = (await c.get("/api/v1/auth/me", person, expect=200)).json()
    assert me["email_verified"] is True
    return person


async def profile_of(c: Client, person: Person) -> dict[str, Any]:
    """The user service builds the profile from quark.auth.user_registered: wait for it."""

    async def probe() -> dict[str, Any] | None:
        resp = await c.get("/api/v1/users/me", person)
        return resp.json() if resp.status_code == 200 else None

    return dict(await eventually(probe, what=f"profile of {person.username}", timeout=20))


def png(colour: str, size: tuple[int, int] = (64, 48)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, colour).save(out, format="PNG")
    return out.getvalue()


async def upload(c: Client, who: Person, purpose: str, colour: str) -> dict[str, Any]:
    """Upload an image and wait until the media service has made its variants."""
    media = (await c.post(f"/api/v1/media?purpose={purpose}", who, expect=201,
                          files={"file": ("picture.png", png(colour), "image/png")})).json()

    async def ready() -> dict[str, Any] | None:
        body = (await c.get(f"/api/v1/media/{media['id']}", who, expect=200)).json()
        assert body["status"] != "failed", body
        return body if body["status"] == "ready" else None

    return dict(await eventually(ready, what=f"media {media['id']} processed", timeout=30))


class LiveSocket:
    """A messaging WebSocket as a client app holds it: token in Sec-WebSocket-Protocol, frames collected."""

    def __init__(self, ws: websockets.ClientConnection) -> None:
        self.ws = ws

    async def next(self, kind: str, timeout: float = 20) -> dict[str, Any]:
        async with asyncio.timeout(timeout):
            while True:
                frame = json.loads(await self.ws.recv())
                if frame.get("type") == "ping":
                    await self.ws.send(json.dumps({"type": "pong"}))
                elif frame.get("type") == kind:
                    return dict(frame)

    async def send(self, frame: dict[str, Any]) -> None:
        await self.ws.send(json.dumps(frame))


@asynccontextmanager
async def live(station: Station, who: Person) -> AsyncIterator[LiveSocket]:
    url = station.url("/api/v1/messages/ws").replace("http://", "ws://", 1)
    async with websockets.connect(url, subprotocols=[websockets.Subprotocol("quark.v1"),
                                                     websockets.Subprotocol(f"bearer.{who.access_token}")]) as ws:
        socket = LiveSocket(ws)
        ready = await socket.next("ready")
        assert ready["user_id"] == who.id
        yield socket


TOXIC = "You are a worthless stupid idiot and everyone hates you, shut the fuck up."


async def test_register_verify_2fa_profile_follow_publish_timeline_interact_delete(station: Station) -> None:
    async with client(station) as c:
        # -- identity: register, verify the email (the test is the mailer), enable 2FA, log in with it
        alice = await verified_user(c, station, "alice")
        setup = (await c.post("/api/v1/auth/2fa/setup", alice, expect=200)).json()
        totp = pyotp.TOTP(setup["secret"])
        codes = (await c.post("/api/v1/auth/2fa/confirm", alice, json={"code": totp.now()}, expect=200)).json()
        assert len(codes["recovery_codes"]) == 10
        await c.post("/api/v1/auth/logout", alice, json={"refresh_token": alice.refresh_token}, expect=204)
        challenge = (await c.post("/api/v1/auth/login", json={"login": alice.email, "password": PASSWORD},
                                  expect=200)).json()
        assert challenge["mfa_required"] is True and "access_token" not in challenge
        # The confirm step spent this time step's code (codes work once): the next step's code is accepted.
        tokens = (await c.post("/api/v1/auth/login/mfa", json={
            "mfa_token": challenge["mfa_token"], "code": totp.at(time.time() + 30)}, expect=200)).json()
        alice.access_token, alice.refresh_token = tokens["access_token"], tokens["refresh_token"]

        # -- profile (user service, created from auth's event)
        assert (await profile_of(c, alice))["username"] == alice.username
        edited = (await c.patch("/api/v1/users/me", alice, json={
            "display_name": "Alice Liddell", "bio": "Down the rabbit hole."}, expect=200)).json()
        assert edited["display_name"] == "Alice Liddell"
        public = (await c.get(f"/api/v1/users/{alice.username}", expect=200)).json()
        assert public["display_name"] == "Alice Liddell" and "email" not in public
        # Avatar: uploaded to the media service, chosen in the profile, variants arrive by quark.media.processed.
        avatar = await upload(c, alice, "avatar", "teal")
        assert set(avatar["variants"]) == {"thumb", "medium", "original"}
        await c.patch("/api/v1/users/me", alice, json={"avatar_media_id": avatar["id"]}, expect=200)

        async def avatar_shown() -> bool:
            shown = (await c.get(f"/api/v1/users/{alice.username}", expect=200)).json()
            return bool(shown["avatar"]) and shown["avatar"]["media_id"] == avatar["id"] and \
                "thumb" in shown["avatar"]["variants"]

        await eventually(avatar_shown, what="avatar on the public profile", timeout=20)
        thumb = await c.http.get(station.url(f"/api/v1/media/{avatar['id']}/variants/thumb"))
        assert thumb.status_code == 200 and thumb.content[8:12] == b"WEBP"

        # -- follow (user service → quark.user.followed → blog's replica)
        bob = await verified_user(c, station, "bob")
        await profile_of(c, bob)
        assert (await c.post(f"/api/v1/users/{alice.username}/follow", bob, expect=201)).json()["status"] == "following"
        following = (await c.get(f"/api/v1/users/{bob.username}/following", bob, expect=200)).json()
        assert [edge["user"]["username"] for edge in following["items"]] == [alice.username]

        # -- publish; the follower's home timeline shows it (fan-out on write, through NATS)
        picture = await upload(c, alice, "post", "orange")
        post = (await c.post("/api/v1/posts", alice, json={
            "title": "Through the looking glass", "body": "It's a *poor* sort of memory that only works backwards.",
            "tags": ["wonderland"], "media_ids": [picture["id"]], "publish": True}, expect=201)).json()

        async def in_home() -> bool:
            items = (await c.get("/api/v1/feed/home", bob, expect=200)).json()["items"]
            return post["id"] in [i["id"] for i in items]

        await eventually(in_home, what="post in the follower's home timeline", timeout=20)
        by_url = (await c.get(f"/api/v1/posts/by/{alice.username}/{post['slug']}", expect=200)).json()
        assert by_url["id"] == post["id"] and "<em>poor</em>" in by_url["body_html"]
        assert [str(m) for m in by_url["media_ids"]] == [picture["id"]]

        # -- comment and react; alice (the author) is online and gets the notification live over WebSocket
        async with live(station, alice) as alice_live:
            comment = (await c.post(f"/api/v1/posts/{post['id']}/comments", bob,
                                    json={"body": "Curiouser and curiouser!"}, expect=201)).json()
            note = (await alice_live.next("notification"))["notification"]
            while note["kind"] != "comment":  # the earlier follow's notification may still be on its way
                note = (await alice_live.next("notification"))["notification"]
            assert note["kind"] == "comment" and note["actor_id"] == bob.id
            await c.post(f"/api/v1/posts/{post['id']}/reactions", bob, json={"kind": "like"}, expect=201)
            await c.post(f"/api/v1/posts/{post['id']}/reactions", bob, json={"kind": "like"}, expect=409)
            shown = (await c.get(f"/api/v1/posts/{post['id']}", expect=200)).json()
            assert shown["comment_count"] == 1 and shown["reactions"].get("like") == 1

            # -- direct messages: bob writes over REST, alice reads live and answers over the WebSocket
            async def direct_chat() -> dict[str, Any] | None:
                resp = await c.post("/api/v1/chats/direct", bob, json={"user_id": alice.id})
                return resp.json() if resp.status_code in (200, 201) else None

            chat = dict(await eventually(direct_chat, what="direct chat (messaging knows both users)", timeout=20))
            sent = (await c.post(f"/api/v1/chats/{chat['id']}/messages", bob, expect=201,
                                 json={"body": "Tea at six?", "client_msg_id": "bob-1"})).json()
            got = (await alice_live.next("message"))["message"]
            assert got["id"] == sent["id"] and got["body"] == "Tea at six?"
            await alice_live.send({"type": "send", "conversation_id": chat["id"], "body": "Always tea time!",
                                   "client_msg_id": "alice-1", "ref": 1})
            ack = await alice_live.next("ack")
            assert ack["client_msg_id"] == "alice-1" and ack["duplicate"] is False
        history = (await c.get(f"/api/v1/chats/{chat['id']}/messages", bob, expect=200)).json()
        assert [m["body"] for m in history["items"]] == ["Tea at six?", "Always tea time!"]

        # -- AI moderation: the toxic comment is flagged (quark.ai.moderation_flagged) and the blog hides it;
        #    an admin (made with `quark create-admin`) reviews it and restores it
        toxic = (await c.post(f"/api/v1/posts/{post['id']}/comments", bob, json={"body": TOXIC}, expect=201)).json()

        def state_of(items: list[dict[str, Any]], comment_id: str) -> tuple[str, str]:
            (mine,) = [i for i in items if i["id"] == comment_id]
            return mine["state"], mine["body_html"]

        async def hidden_by_ai() -> bool:
            thread = (await c.get(f"/api/v1/posts/{post['id']}/comments", expect=200)).json()["items"]
            return state_of(thread, toxic["id"]) == ("hidden", "")

        await eventually(hidden_by_ai, what="toxic comment hidden after the AI flag", timeout=30)
        thread = (await c.get(f"/api/v1/posts/{post['id']}/comments", expect=200)).json()["items"]
        assert state_of(thread, comment["id"])[0] == "visible"  # the friendly one is untouched
        admin = Person(username=f"root{int(time.time() * 1000) % 10**6}", email=f"root-{time.time_ns()}@example.com")
        station.create_admin(admin)
        await c.login(admin)
        queue = (await c.get("/api/v1/posts/moderation/queue", admin, expect=200)).json()["items"]
        assert any(str(item.get("target_id")) == toxic["id"] for item in queue), queue
        await c.post(f"/api/v1/comments/{toxic['id']}/restore", admin, json={}, expect=200)
        thread = (await c.get(f"/api/v1/posts/{post['id']}/comments", expect=200)).json()["items"]
        state, html = state_of(thread, toxic["id"])
        assert state == "visible" and "worthless" in html
        bobs_picture = await upload(c, bob, "post", "purple")
        bobs_draft = (await c.post("/api/v1/ai/drafts", bob, json={"topic": "tea parties in wonderland"},
                                   expect=201)).json()

        # -- account deletion propagates: auth → user (profile gone) → blog (reactions, comments gone) → media
        await c.delete("/api/v1/auth/me", bob, json={"password": PASSWORD}, expect=204)
        await c.post("/api/v1/auth/login", json={"login": bob.username, "password": PASSWORD}, expect=401)

        async def profile_gone() -> bool:
            return (await c.get(f"/api/v1/users/{bob.username}")).status_code == 404

        await eventually(profile_gone, what="bob's profile removed by the user service", timeout=20)

        async def blog_forgot_bob() -> bool:
            p = (await c.get(f"/api/v1/posts/{post['id']}", expect=200)).json()
            return p["comment_count"] == 0 and not p["reactions"].get("like")

        await eventually(blog_forgot_bob, what="bob's comments and reaction removed by the blog", timeout=20)

        async def media_gone() -> bool:
            return (await c.get(f"/api/v1/media/{bobs_picture['id']}")).status_code == 404

        await eventually(media_gone, what="bob's media (and its objects) deleted by the media service", timeout=20)

        async def bobs_side_gone() -> bool:
            # Alice keeps the conversation and her own message; bob's are tombstones from a deleted account.
            items = (await c.get(f"/api/v1/chats/{chat['id']}/messages", alice, expect=200)).json()["items"]
            return [(m["sender_id"], m["sender_deleted"]) for m in items] == [(None, True), (alice.id, False)]

        await eventually(bobs_side_gone, what="bob's messages removed by the messaging service", timeout=20)
        followers = (await c.get(f"/api/v1/users/{alice.username}/followers", alice, expect=200)).json()
        assert followers["items"] == []

        async def ai_forgot_bob() -> bool:
            """#16 item 7: the AI service keeps no text and no id of bob's (his verdicts stay, anonymised)."""
            verdicts = (await c.get("/api/v1/ai/moderation", admin, params={"target_id": toxic["id"]},
                                    expect=200)).json()["items"]
            runs = (await c.get("/api/v1/ai/runs", admin, params={"input_id": bobs_draft["id"]},
                                expect=200)).json()["items"]
            return bool(verdicts) and runs == [] and all(
                v["author_id"] is None and v["preview"] == "" for v in verdicts)

        await eventually(ai_forgot_bob, what="bob's drafts, runs and comment previews erased by the ai service",
                         timeout=20)

async def test_traefik_routed_every_module_and_the_websocket(station: Station) -> None:
    """Fleet mode: the journey above went through real Traefik on the station's port, WebSocket included —
    Traefik's own metrics counted it per module — and the hub's internal paths are not routed."""
    if station.mode != "fleet":
        pytest.skip("the embedded station routes in-process; Traefik fronts `quark dev --fleet`")
    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    async with httpx.AsyncClient(timeout=10) as http:
        assert (await http.get(station.gateway["ping"])).status_code == 200
        internal = await http.get(station.base + "/api/v1/hub/traefik/config")
        assert internal.status_code == 404, internal.text  # served on the internal network only
        public = await http.get(station.base + "/api/v1/hub/services")
        assert public.status_code == 200 and public.headers.get("x-frame-options") == "DENY"
        metrics = (await http.get(station.gateway["metrics"])).text
    served: dict[tuple[str, str], float] = {}
    for family in text_string_to_metric_families(metrics):
        for sample in family.samples:
            if sample.name == "traefik_service_requests_total":
                key = (sample.labels["service"], sample.labels.get("protocol", "http"))
                served[key] = served.get(key, 0) + sample.value
    for module in ("auth", "user", "media", "blog", "messaging"):
        if station.has(module):
            assert served.get((f"{module}@http", "http"), 0) > 0, sorted(served)
    if station.has("messaging"):
        assert served.get(("messaging@http", "websocket"), 0) > 0, sorted(served)


# -- docs/api/asyncapi.yaml says what is on the wire ---------------------------------------------------------
# Every event this station published validates against the schema its AsyncAPI message declares: the
# CloudEvents envelope, with `data` the event's payload schema. The events are whatever the station's streams
# hold (the journey's, when it ran first) plus a short journey of the test's own.

ASYNCAPI = Path(__file__).resolve().parents[2] / "docs" / "api" / "asyncapi.yaml"


def message_validators() -> dict[str, jsonschema.protocols.Validator]:
    """type → a validator of that message's payload, with `#/components/...` resolved in the document."""
    doc = yaml.safe_load(ASYNCAPI.read_text())
    out = {}
    for key, message in doc["components"]["messages"].items():
        schema = {**message["payload"], "components": doc["components"]}
        cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft7Validator)
        out[message["name"]] = cls(schema, format_checker=cls.FORMAT_CHECKER)
        assert message["name"].replace(".", "_") == key
    return out


async def captured_events(station: Station) -> list[tuple[str, dict[str, Any]]]:
    nc = await nats.connect(station.nats_url)
    try:
        js = nc.jetstream()
        events = []
        for info in await js.streams_info():
            name = info.config.name or ""
            if not name.startswith("QUARK_") or name == "QUARK_DLQ" or "_ADV_" in name:
                continue
            for msg in await read_stream(js, name):
                events.append((msg.subject or "", json.loads(msg.data or b"{}")))
        return events
    finally:
        await nc.close()


def test_every_message_payload_is_the_envelope_with_its_data() -> None:
    doc = yaml.safe_load(ASYNCAPI.read_text())
    envelope = doc["components"]["schemas"]["CloudEvent"]
    assert {"specversion", "id", "source", "type", "time"} <= set(envelope["required"])
    for key, message in doc["components"]["messages"].items():
        payload = message["payload"]
        assert payload["allOf"] == [{"$ref": "#/components/schemas/CloudEvent"}], key
        assert payload["properties"]["type"] == {"const": message["name"]}
        assert payload["properties"]["data"] == {"$ref": f"#/components/schemas/{key}"}
    # An envelope whose data is wrong fails; the same data bare (the old, wrong reading) fails too.
    validate = message_validators()["quark.auth.user_verified"]
    good = {"specversion": "1.0", "id": "1", "source": "quark/auth", "type": "quark.auth.user_verified",
            "time": "2026-12-04T10:00:00Z", "data": {"user_id": "8a0d5f0e-1b1e-4c52-9d3b-2f6a2f1f0a11",
                                                    "username": "ann"}}
    assert not list(validate.iter_errors(good))
    assert list(validate.iter_errors({**good, "data": {"username": "ann"}}))
    assert list(validate.iter_errors({**good, "type": "quark.auth.user_deleted"}))
    assert list(validate.iter_errors({**good, "time": "yesterday"}))
    assert list(validate.iter_errors(good["data"]))


async def test_captured_events_validate_against_the_asyncapi_schemas(station: Station) -> None:
    async with client(station) as c:  # a short journey of its own: account events, a profile, the mail
        ann = await c.register("wire")
        await c.login(ann)
        await c.get("/api/v1/auth/me", ann, expect=200)
    validators = message_validators()
    events = await captured_events(station)
    types = {event.get("type") for _, event in events}
    assert {"quark.auth.user_registered", "quark.auth.email_requested", "quark.auth.user_logged_in",
            "quark.hub.module.docked"} <= types, types
    failures = []
    for subject, event in events:
        validator = validators.get(str(event.get("type")))
        if validator is None:
            failures.append(f"{subject}: type {event.get('type')!r} is not in asyncapi.yaml")
            continue
        assert subject == event["type"]
        failures += [f"{event['type']} {event.get('id')}: {e.message} at {list(e.absolute_path)}"
                     for e in validator.iter_errors(event)]
    assert not failures, f"{len(failures)} of {len(events)} events do not match their schema:\n" + "\n".join(
        failures[:20])
