"""Events of auth. It publishes through the outbox (service.py, same transaction as the change) and
consumes nothing: identity is the source other services replicate from.
"""

from __future__ import annotations

from quark_auth.schemas import (
    EmailRequested,
    PasswordChanged,
    RoleChanged,
    UserDeleted,
    UserLoggedIn,
    UserRegistered,
    UserVerified,
)
from quark_sdk.events import EventPayload

PUBLISHED: tuple[type[EventPayload], ...] = (
    UserRegistered,
    UserVerified,
    UserLoggedIn,
    PasswordChanged,
    RoleChanged,
    UserDeleted,
    EmailRequested,
)
