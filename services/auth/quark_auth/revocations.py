"""The auth side of the station's revocation list (quark_sdk.revocation): deleted, suspended and reset accounts.

Auth owns accounts, so it alone writes the list: the moment an account is deleted (inside the deleting
transaction, so a failed write to Valkey deletes nothing) and the moment a suspension is applied (inside
the consumer's transaction, so a failed write is retried with the event); an unsuspension lifts it.
Every module's `TokenVerifier` then refuses tokens issued up to that moment — reads once the pub/sub
announcement arrives, writes (`WritingUser`) at once.

The moment is the runtime's clock, the clock that stamps `iat` into the tokens it is compared with.
An entry is kept as long as an access token issued before it can live (`access_token_ttl` plus the
verifiers' leeway), then pruned: older tokens have expired, and a deleted or suspended account cannot
get new ones (no login, no refresh).
"""

from __future__ import annotations

import math
import uuid

from quark_auth.runtime import AuthRuntime
from quark_sdk.revocation import restore_subject, revoke_subject

# Above the SDK verifiers' clock leeway (10 s), with margin for clock skew between hosts.
LEEWAY = 60


async def revoke_account(rt: AuthRuntime, user_id: uuid.UUID) -> float:
    """Refuse every token of the account issued up to now, in every module; returns the moment."""
    return await revoke_subject(rt.redis, str(user_id), namespace=rt.settings.event_namespace, at=rt.clock(),
                                keep_for=rt.settings.access_token_ttl + LEEWAY)


async def revoke_tokens_before_this_second(rt: AuthRuntime, user_id: uuid.UUID) -> float:
    """A password reset: tokens taken with the old password stop working everywhere, while the first tokens
    of the new one work at once. `iat` is stamped in whole seconds, so the cut lies just below this second:
    a token issued earlier within the same second survives — a window under a second, for an attacker who
    would have to sign in in the very second the owner resets."""
    at = math.floor(rt.clock()) - 0.5
    return await revoke_subject(rt.redis, str(user_id), namespace=rt.settings.event_namespace, at=at,
                                keep_for=rt.settings.access_token_ttl + LEEWAY)


async def restore_account(rt: AuthRuntime, user_id: uuid.UUID) -> None:
    """Lift the revocation (an unsuspended account): tokens work again everywhere."""
    await restore_subject(rt.redis, str(user_id), namespace=rt.settings.event_namespace)
