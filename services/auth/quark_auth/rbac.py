"""Roles and the permissions they carry (documented in docs/auth.md; keep the two in step).

Roles are cumulative, as in the SDK's `Principal.has_role` (admin ⊇ moderator ⊇ user): a moderator has
every user permission, an admin every moderator permission. Access tokens carry both the roles and the
flattened permission list, so a service can check either without calling auth.
"""

from __future__ import annotations

from collections.abc import Iterable

ROLES: tuple[str, ...] = ("user", "moderator", "admin")

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
}

PERMISSIONS: dict[str, frozenset[str]] = {}
_acc: set[str] = set()
for _role in ROLES:
    _acc |= set(_OWN[_role])
    PERMISSIONS[_role] = frozenset(_acc)


def permissions_for(roles: Iterable[str]) -> list[str]:
    """The sorted union of the permissions of `roles` (unknown roles grant nothing)."""
    out: set[str] = set()
    for role in roles:
        out |= PERMISSIONS.get(role, frozenset())
    return sorted(out)
