"""One NATS identity per module, with publish/subscribe permissions derived from what it docks with.

Why: with one shared NATS user any module could read any subject, e.g. `quark.auth.email_requested`, which
carries live password-reset tokens. Each module now connects as its own user (name = the module) and may:

* publish its own domains' events (`quark.<domain>.>` for every domain of `exposes.events`) and manage those
  domains' streams (create/update/info/get), the stream being one per producing domain (DESIGN §5);
* consume what it consumes (the manifest's `consumes` and its consumers' handlers): a durable pull consumer
  named `<module>-<purpose>` on each producing domain's stream, its max-deliveries advisory stream, acks,
  and plain subscriptions to those subjects; never another module's durable consumers;
* dead-letter to `quark.dlq.<module>.>`, use its own request inbox `_INBOX_<module>.>` (JetStream replies and
  pull deliveries arrive there, so one module cannot snoop another's deliveries), and its own core-NATS
  subjects `rt.*.<module>.>` (e.g. messaging's live fan-out).

Private events (`PRIVATE_EVENTS`) are readable only by the modules listed for them (and their producer). A
JetStream consumer's filter is in the request body, which permissions cannot see, except when it is created
through the subject `$JS.API.CONSUMER.CREATE.<stream>.<name>.<filter>`: so on a stream that carries private
events a module gets one single-filter consumer per event type (`<durable>__<event>`), and only that subject
form, for exactly the types it may read (quark_sdk.events does this whenever it connects with credentials).

`render_config` writes the nats-server configuration (one account, a user per module, plus an operator user
with every permission); `quark dev` writes it with generated passwords under `.quark/`, and
deploy/nats/nats.conf is the same rendering with passwords read from the environment.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

from quark_sdk.events import dead_letter_subject, domain_of, stream_for, subject_for

# Event type -> the modules (besides its producer) that may read it.
PRIVATE_EVENTS: dict[str, frozenset[str]] = {
    "quark.auth.email_requested": frozenset({"mailer"}),  # live reset / verification tokens
    "quark.auth.sms_requested": frozenset({"mailer"}),  # live SMS codes (sign-in, phone verification)
    "quark.message.reported": frozenset({"moderation"}),  # words of a private chat, for its moderators only
}
PRIVATE_DOMAINS = frozenset(domain_of(t) for t in PRIVATE_EVENTS)
OPERATOR_USER = "quark"
SECRETS_PATH = "nats/users"


def inbox_prefix(module: str) -> str:
    return f"_INBOX_{module}"


def slot_name(durable: str, type_name: str) -> str:
    """The consumer of one event type on a stream that carries private events."""
    return f"{durable}__{type_name.rsplit('.', 1)[1]}"


def advisory_stream(stream: str, consumer: str) -> str:
    return f"{stream}_ADV_{consumer}"


def may_read(module: str, type_name: str, producer_domains: Iterable[str] = ()) -> bool:
    readers = PRIVATE_EVENTS.get(type_name)
    return readers is None or module in readers or domain_of(type_name) in set(producer_domains)


@dataclass(frozen=True)
class BusModule:
    """What permissions are computed from: a module's name, published and consumed types, its durables."""

    name: str
    publishes: tuple[str, ...] = ()
    consumes: tuple[str, ...] = ()
    # durable consumer name -> the event types its handlers take
    durables: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    @classmethod
    def of(cls, module: Any) -> BusModule:
        """From a quark_sdk.app.QuarkModule (manifest + consumers)."""
        manifest = module.manifest()
        durables = {f"{module.name}-{c.purpose}".replace(".", "_"): tuple(sorted(c.handlers))
                    for c in module.consumers}
        return cls(module.name, tuple(manifest.exposes.events), tuple(manifest.consumes), durables)

    @property
    def own_domains(self) -> list[str]:
        return sorted({domain_of(t) for t in self.publishes})

    def readable(self, types: Iterable[str]) -> list[str]:
        return sorted({t for t in types if "*" not in t and ">" not in t and may_read(self.name, t, self.own_domains)})


def permissions(mod: BusModule, namespace: str = "") -> dict[str, dict[str, list[str]]]:
    """The nats-server `permissions` block of one module's user."""
    ns = namespace
    pub: list[str] = []
    sub: list[str] = [f"{inbox_prefix(mod.name)}.>", f"rt.*.{mod.name}.>"]
    pub.append(f"rt.*.{mod.name}.>")
    for domain in mod.own_domains:
        stream = stream_for(domain, ns)
        pub.append(subject_for(f"quark.{domain}.>", ns))
        pub += [f"$JS.API.STREAM.{op}.{stream}" for op in ("CREATE", "UPDATE", "INFO", "MSG.GET")]
    if mod.durables:
        dlq = stream_for("dlq", ns)
        pub.append(dead_letter_subject(mod.name, ">", ns))
        pub += [f"$JS.API.STREAM.{op}.{dlq}" for op in ("CREATE", "UPDATE", "INFO")]
    sub += [subject_for(t, ns) for t in mod.readable(mod.consumes)]
    for durable, types in sorted(mod.durables.items()):
        by_domain: dict[str, list[str]] = {}
        for t in mod.readable(types):
            by_domain.setdefault(domain_of(t), []).append(t)
            sub.append(subject_for(t, ns))
        for domain, domain_types in sorted(by_domain.items()):
            stream = stream_for(domain, ns)
            pub.append(f"$JS.API.STREAM.INFO.{stream}")
            if domain in PRIVATE_DOMAINS:
                slots = [(slot_name(durable, t), [f"$JS.API.CONSUMER.CREATE.{stream}.{slot_name(durable, t)}."
                                                  f"{subject_for(t, ns)}"]) for t in domain_types]
            else:
                slots = [(durable, [f"$JS.API.CONSUMER.CREATE.{stream}.{durable}",
                                    f"$JS.API.CONSUMER.CREATE.{stream}.{durable}.>"])]
                pub.append(f"$JS.API.STREAM.MSG.GET.{stream}")  # dead-letters what a crash loop gave up on
            for name, create in slots:
                adv = advisory_stream(stream, name)
                pub += create
                pub += [f"$JS.API.CONSUMER.{op}.{stream}.{name}" for op in ("INFO", "MSG.NEXT")]
                pub += [f"$JS.ACK.{stream}.{name}.>", f"$JS.ACK.*.*.{stream}.{name}.>"]
                pub += [f"$JS.API.STREAM.CREATE.{adv}", f"$JS.API.STREAM.INFO.{adv}",
                        f"$JS.API.CONSUMER.CREATE.{adv}.{name}", f"$JS.API.CONSUMER.INFO.{adv}.{name}",
                        f"$JS.API.CONSUMER.MSG.NEXT.{adv}.{name}", f"$JS.ACK.{adv}.{name}.>",
                        f"$JS.ACK.*.*.{adv}.{name}.>"]
    if mod.name == FLEET_OPERATOR:
        pub += operator_permissions(ns)
    return {"publish": {"allow": list(dict.fromkeys(pub))}, "subscribe": {"allow": list(dict.fromkeys(sub))}}


# The module serving the console's operator API (plugin-hub/quark_hub/operator.py): it reads every stream's and
# consumer's state, reads and deletes dead letters, and replays one to its original subject — which means it may
# publish any event, a power the hub already holds as the station's identity provider.
FLEET_OPERATOR = "hub"


def operator_permissions(namespace: str = "") -> list[str]:
    dlq = stream_for("dlq", namespace)
    return ["$JS.API.INFO", "$JS.API.STREAM.LIST", "$JS.API.STREAM.NAMES", "$JS.API.STREAM.INFO.*",
            "$JS.API.CONSUMER.LIST.*", "$JS.API.STREAM.MSG.GET.*", f"$JS.API.STREAM.MSG.DELETE.{dlq}",
            subject_for("quark.>", namespace)]


def _q(value: str) -> str:
    return json.dumps(value)


def render_config(modules: Sequence[BusModule], passwords: Mapping[str, str], *, namespace: str = "",
                  from_env: bool = False, extra: str = "") -> str:
    """nats-server configuration: a user per module and the operator user.

    With `from_env` each password is a variable the server reads from its environment
    (`$QUARK_<MODULE>_NATS_PASSWORD`), so the file holds no secret and can live in the repository."""

    def password(user: str) -> str:
        return f"${env_var(user)}" if from_env else _q(passwords[user])

    lines = ["# Generated by quark_sdk.natsauth: one NATS user per module (permissions from its manifest).",
             extra, "authorization {", "  users = ["]
    lines.append(f"    {{user: {_q(OPERATOR_USER)}, password: {password(OPERATOR_USER)}}}")
    for mod in sorted(modules, key=lambda m: m.name):
        perms = permissions(mod, namespace)
        lines.append(f"    {{user: {_q(mod.name)}, password: {password(mod.name)}, permissions: {{")
        for kind in ("publish", "subscribe"):
            allow = ", ".join(_q(s) for s in perms[kind]["allow"])
            lines.append(f"      {kind}: {{allow: [{allow}]}}")
        lines.append("    }}")
    lines += ["  ]", "}", ""]
    return "\n".join(line for line in lines if line is not None)


def env_var(user: str) -> str:
    """The variable the fleet's nats-server reads a user's password from (the operator's: NATS_PASSWORD)."""
    if user == OPERATOR_USER:
        return "NATS_PASSWORD"
    return f"QUARK_{user.upper().replace('-', '_')}_NATS_PASSWORD"


def ensure_passwords(store: Any, users: Iterable[str]) -> dict[str, str]:
    """Passwords from the secret store (`nats/users`), generated for users that have none yet."""
    current = dict(store.get(SECRETS_PATH) or {})
    wanted = [OPERATOR_USER, *users]
    if any(u not in current for u in wanted):
        current.update({u: secrets.token_urlsafe(24) for u in wanted if u not in current})
        store.put(SECRETS_PATH, current)
    return current


def with_credentials(url: str, user: str, password: str) -> str:
    """`url` (comma-separated servers) with user and password in each server's userinfo."""
    out = []
    for part in url.split(","):
        p = urlsplit(part.strip())
        hostport = p.netloc.rpartition("@")[2] or "127.0.0.1"  # keeps IPv6 brackets and the port as written
        netloc = f"{quote(user, safe='')}:{quote(password, safe='')}@{hostport}"
        out.append(urlunsplit((p.scheme, netloc, p.path, p.query, p.fragment)))
    return ",".join(out)


def redact(url: str) -> str:
    """A NATS URL for logs: the password never appears."""
    out = []
    for part in url.split(","):
        p = urlsplit(part.strip())
        if p.password is None:
            out.append(part.strip())
            continue
        netloc = f"{p.username}:***@{p.netloc.rpartition('@')[2]}"
        out.append(urlunsplit((p.scheme, netloc, p.path, p.query, p.fragment)))
    return ",".join(out)


def module_env(modules: Sequence[Any], base_url: str, passwords: Mapping[str, str]) -> dict[str, str]:
    """`QUARK_<PREFIX>NATS_URL` for each module (its settings' own prefix wins over the shared QUARK_NATS_URL)."""
    env: dict[str, str] = {}
    for module in modules:
        prefix = str(module.settings_cls.model_config.get("env_prefix", "")).upper()
        if prefix and module.name in passwords:
            env[f"{prefix}NATS_URL"] = with_credentials(base_url, module.name, passwords[module.name])
    return env


def write_config(path: Path, modules: Sequence[Any], passwords: Mapping[str, str], *, namespace: str = "",
                 extra: str = "") -> Path:
    """Write the embedded station's nats-server config (mode 0600: it holds the passwords)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = render_config([m if isinstance(m, BusModule) else BusModule.of(m) for m in modules], passwords,
                         namespace=namespace, extra=extra)
    path.touch(mode=0o600)
    path.chmod(0o600)
    path.write_text(text)
    return path


FLEET_HEADER = """\
# The compose fleet's nats-server users: a user per module, permissions from its manifest (docs/operations.md).
# Generated: `python -m quark_sdk.natsauth deploy/nats/nats.conf` after adding a module or changing what one
# publishes or consumes (tests/security/test_nats_permissions.py checks it is current). Passwords are not here:
# the server reads $QUARK_<MODULE>_NATS_PASSWORD from its environment (docker-compose.yml, .env)."""


def fleet_config(modules: Sequence[Any] | None = None) -> str:
    """deploy/nats/nats.conf for the installed modules (every module on the bus)."""
    if modules is None:
        from quark_sdk.cli import installed_modules

        modules = installed_modules()
    bus = [BusModule.of(m) for m in modules if m.manifest().requires.event_bus or m.consumers]
    text = render_config(bus, {}, from_env=True)
    return text.replace(text.splitlines()[0], FLEET_HEADER, 1)


def main(argv: Sequence[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m quark_sdk.natsauth",
                                     description="write the fleet's nats-server users (deploy/nats/nats.conf)")
    parser.add_argument("path", type=Path)
    parser.add_argument("--check", action="store_true", help="exit 1 if the file is not current")
    args = parser.parse_args(argv)
    text = fleet_config()
    if args.check:
        current = args.path.read_text() if args.path.exists() else ""
        return 0 if current == text else 1
    args.path.parent.mkdir(parents=True, exist_ok=True)
    args.path.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
