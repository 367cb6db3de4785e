"""Usernames no account may take: the one list, checked at registration and by `quark create-admin`.

Usernames appear in URLs of other services next to fixed path segments, so an account named like a
segment would be unreachable or shadow a route:

- user service, `/api/v1/users/{username}` beside `/users/me`, `/users/search`, `/users/admin/...`;
- blog service, `/api/v1/posts/by/{username}` beside `/posts/mine`, `/posts/tags`, `/posts/categories`,
  `/posts/moderation/...`, `/posts/by/...`; `/api/v1/feed/user/{username}` beside `/feed/home`,
  `/feed/public`, `/feed/tag/...`;
- the gateway's top-level prefixes (`/api`, `/.well-known`, `/hub`, `/modules`, ...) and the
  frontend's likely pages, so a future `/@{username}` or `/{username}` route stays possible.

Also refused: names that impersonate the station's staff or system (`root` is deliberately allowed:
it is what operators conventionally call the first admin). The check compares case-insensitively and
ignores `.`, `-` and `_`, so `Well_Known`, `a.dmin` and `ME` are refused too. When a service adds a
fixed segment next to a `{username}` path, add it here (docs/auth.md, "Reserved usernames").
"""

from __future__ import annotations

import re

# Fixed path segments of the user and blog routers (read from their api.py), then station-wide names.
_ROUTE_SEGMENTS = (
    # services/user: /api/v1/users/...
    "me", "search", "admin", "users", "activity", "follow-requests", "followers", "following", "blocks",
    "mutes", "follow", "block", "mute", "suspend", "unsuspend",
    # services/blog: /api/v1/posts/..., /api/v1/feed/..., /api/v1/comments, /api/v1/search
    "posts", "mine", "tags", "tag", "categories", "category", "by", "moderation", "queue", "reports",
    "feed", "home", "public", "user", "comments", "reactions", "publish", "unpublish", "schedule", "hide",
    "restore", "report", "drafts",
    # other prefixes behind the gateway
    "api", "well-known", "auth", "hub", "modules", "plugins", "media", "chats", "messages", "notifications",
    "ai", "health", "metrics", "openapi", "docs", "static", "assets",
)
_SYSTEM_NAMES = (
    "administrator", "moderator", "mod", "staff", "support", "help", "system", "quark", "official", "security",
    "abuse", "postmaster", "webmaster", "hostmaster", "noreply", "no-reply", "mailer", "anonymous", "guest",
    "null", "none", "undefined", "nobody", "everyone", "all", "here", "login", "logout", "register", "signup",
    "signin", "settings", "new", "edit", "delete", "explore", "about", "terms", "privacy",
)


def _key(name: str) -> str:
    return re.sub(r"[._-]", "", name.lower())


RESERVED_USERNAMES: frozenset[str] = frozenset(_ROUTE_SEGMENTS + _SYSTEM_NAMES)
_RESERVED_KEYS: frozenset[str] = frozenset(_key(n) for n in RESERVED_USERNAMES)


def is_reserved(username: str) -> bool:
    """True if `username` equals a reserved name, ignoring case and the separators `.`, `-`, `_`."""
    return _key(username) in _RESERVED_KEYS
