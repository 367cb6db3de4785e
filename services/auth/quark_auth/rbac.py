"""Roles and the permissions they carry (documented in docs/auth.md; keep the two in step).

Roles are cumulative, as in the SDK's `Principal.has_role` (admin ⊇ moderator ⊇ user): a moderator has
every user permission, an admin every moderator permission. Access tokens carry both the roles and the
flattened permission list, so a service can check either without calling auth.

`operator` stands outside that chain: running the fleet (infrastructure, dead letters, logs) is a separate
duty that no admin holds by default. It is granted like any role, and the console's operator pages and the
hub's operator API want it together with `admin` (an operator sees internal addresses and raw events).
"""

from __future__ import annotations

from collections.abc import Iterable

CHAIN: tuple[str, ...] = ("user", "moderator", "admin")  # cumulative, lowest first
SEPARATE: tuple[str, ...] = ("operator",)  # held on their own: implied by no other role
ROLES: tuple[str, ...] = (*CHAIN, *SEPARATE)

_OWN: dict[str, tuple[str, ...]] = {
    "user": (
        "profile:write",       # edit one's own profile
        "post:create",         # write posts; edit/delete one's own
        "comment:create",      # comment; edit/delete one's own
        "message:send",        # chats and direct messages
        "media:upload",        # upload images and files
        "ai:use",              # call the AI features
        "user:follow",         # follow other users
    ),
    "moderator": (
        "post:moderate",       # hide/delete any post
        "comment:moderate",    # hide/delete any comment
        "user:mute",           # mute/suspend posting of a user
        "report:review",       # see and resolve abuse reports
    ),
    "admin": (
        "user:read",           # list all accounts, see emails
        "role:manage",         # grant and revoke roles
        "user:delete",         # delete any account
        "module:manage",       # dock/undock modules in the hub
        "system:configure",    # station-wide settings
    ),
    "operator": (
        "fleet:read",          # infrastructure status, event streams, dead letters, logs
        "fleet:operate",       # replay or discard dead letters, module lifecycle
    ),
}

PERMISSIONS: dict[str, frozenset[str]] = {}
_acc: set[str] = set()
for _role in CHAIN:
    _acc |= set(_OWN[_role])
    PERMISSIONS[_role] = frozenset(_acc)
for _role in SEPARATE:
    PERMISSIONS[_role] = frozenset(_OWN[_role])


def permissions_for(roles: Iterable[str]) -> list[str]:
    """The sorted union of the permissions of `roles` (unknown roles grant nothing)."""
    out: set[str] = set()
    for role in roles:
        out |= PERMISSIONS.get(role, frozenset())
    return sorted(out)
