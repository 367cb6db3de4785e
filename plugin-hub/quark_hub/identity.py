"""The hub as identity provider for service tokens (OAuth2 client credentials, RFC 6749 §4.4).

A module authenticates with its client id (its module name) and secret and gets a short-lived JWT
signed by the hub's key: iss "quark-hub", token_use "service", sub = the module, aud as requested
(default "quark"), scope = the requested scopes that the module may have. What a module may have:
the scopes an admin fixed for its client, or else the `scopes` of the manifest it registered.

Secrets are stored as scrypt hashes and compared in constant time; an unknown client costs the same
hashing as a known one, so timing does not reveal which client ids exist. Failed attempts are
counted per client address and answered 429 past a limit. The signing keys live in the secret store
(Vault in the fleet), generated on the very first start under a Redis lock.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import logging
import secrets
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import delete, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert

from quark_hub.models import ServiceClient
from quark_hub.ratelimit import FixedWindow
from quark_hub.registry_store import RegistryStore
from quark_hub.runtime import HubRuntime
from quark_hub.schemas import AUDIENCE, SCOPE, ClientCreate, ClientCreated, ClientPage, ClientView, TokenResponse
from quark_hub.settings import HubSettings
from quark_sdk.auth import HUB_ISSUER, SigningKeySet
from quark_sdk.errors import Conflict, NotFound, QuarkError, RateLimited
from quark_sdk.registry import MODULE_NAME

log = logging.getLogger("quark.hub.identity")

KEYS_PATH = "hub/signing-keys"
CLIENTS_PATH = "hub/clients"
_SCRYPT_N, _SCRYPT_R, _SCRYPT_P, _SCRYPT_LEN = 2**14, 8, 1, 32


# -- errors (RFC 6749 §5.2 codes, inside problem+json) ------------------------------------------------


class OAuthError(QuarkError):
    """A token-endpoint error: problem+json that also carries OAuth's `error` and `error_description`."""

    status, code, title = 400, "invalid-request", "Invalid token request"

    def __init__(self, error: str, description: str, *, status: int = 400,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(description, code=error.replace("_", "-"),
                         extra={"error": error, "error_description": description}, headers=headers)
        self.status = status
        if status == 401:
            self.title = "Client authentication failed"


def invalid_client() -> OAuthError:
    """One answer for unknown client, wrong secret and missing credentials: nothing to probe for."""
    return OAuthError("invalid_client", "client authentication failed", status=401,
                      headers={"WWW-Authenticate": 'Basic realm="quark-hub"'})


# -- secrets ------------------------------------------------------------------------------------------


def generate_secret() -> str:
    return secrets.token_urlsafe(32)


def hash_secret(secret: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(secret.encode(), salt=salt, n=_SCRYPT_N, r=_SCRYPT_R, p=_SCRYPT_P, dklen=_SCRYPT_LEN)
    b64 = base64.urlsafe_b64encode
    return f"scrypt${_SCRYPT_N}${_SCRYPT_R}${_SCRYPT_P}${b64(salt).decode()}${b64(digest).decode()}"


_DUMMY_HASH = hash_secret(secrets.token_urlsafe(16))


def verify_secret(secret: str, stored: str) -> bool:
    """Constant-time comparison of scrypt digests; False for anything malformed."""
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        want = base64.urlsafe_b64decode(digest)
        got = hashlib.scrypt(secret.encode(), salt=base64.urlsafe_b64decode(salt), n=int(n), r=int(r), p=int(p),
                             dklen=len(want))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, want)


# -- signing keys -------------------------------------------------------------------------------------


async def load_signing_keys(settings: HubSettings, store: RegistryStore, *, wait: float = 15.0) -> SigningKeySet:
    """The hub's keys from the secret store; generated once (under a lock, so two first starts agree)."""
    secret_store = settings.secret_store()

    async def stored() -> SigningKeySet | None:
        raw = await asyncio.to_thread(secret_store.get, KEYS_PATH)
        return SigningKeySet.from_dict(json.loads(raw["keyset"])) if raw and "keyset" in raw else None

    keys = await stored()
    token = uuid.uuid4().hex
    deadline = time.monotonic() + wait
    while keys is None:
        if await store.hold_lock("signing-keys", token, wait):
            try:
                keys = await stored()
                if keys is None:
                    keys = SigningKeySet.generate()
                    await asyncio.to_thread(secret_store.put, KEYS_PATH, {"keyset": json.dumps(keys.to_dict())})
                    log.info("generated the hub's signing key %s", keys.active.kid)
            finally:
                await store.release_lock("signing-keys", token)
            break
        if time.monotonic() > deadline:
            raise RuntimeError("another hub holds the signing-key lock but never stored keys")
        await asyncio.sleep(0.1)
        keys = await stored()
    return keys


# -- clients ------------------------------------------------------------------------------------------


def client_view(row: ServiceClient) -> ClientView:
    return ClientView(client_id=row.client_id, scopes=row.scopes, source=row.source, description=row.description,
                      created_at=row.created_at, updated_at=row.updated_at, last_used_at=row.last_used_at)


async def create_client(rt: HubRuntime, body: ClientCreate) -> ClientCreated:
    secret = body.client_secret or generate_secret()
    hashed = await asyncio.to_thread(hash_secret, secret)
    async with rt.db.transaction() as session:
        row = (await session.execute(
            pg_insert(ServiceClient).values(client_id=body.client_id, secret_hash=hashed, scopes=body.scopes,
                                            source="admin", description=body.description)
            .on_conflict_do_nothing(index_elements=["client_id"]).returning(ServiceClient)
        )).scalar_one_or_none()
        if row is None:
            raise Conflict(f"client {body.client_id} already exists; rotate its secret or delete it first",
                           code="client-exists")
        return ClientCreated(**client_view(row).model_dump(), client_secret=secret)


async def list_clients(rt: HubRuntime) -> ClientPage:
    async with rt.db.session() as session:
        rows = (await session.execute(select(ServiceClient).order_by(ServiceClient.client_id))).scalars().all()
    return ClientPage(items=[client_view(r) for r in rows])


async def delete_client(rt: HubRuntime, client_id: str) -> None:
    async with rt.db.transaction() as session:
        gone = (await session.execute(delete(ServiceClient).where(ServiceClient.client_id == client_id)
                                      .returning(ServiceClient.client_id))).scalar_one_or_none()
    if gone is None:
        raise NotFound(f"no client {client_id[:40]!r}", code="unknown-client")


async def rotate_secret(rt: HubRuntime, client_id: str) -> ClientCreated:
    secret = generate_secret()
    hashed = await asyncio.to_thread(hash_secret, secret)
    async with rt.db.transaction() as session:
        row = (await session.execute(
            update(ServiceClient).where(ServiceClient.client_id == client_id)
            .values(secret_hash=hashed, updated_at=datetime.now(UTC)).returning(ServiceClient)
        )).scalar_one_or_none()
        if row is None:
            raise NotFound(f"no client {client_id[:40]!r}", code="unknown-client")
        return ClientCreated(**client_view(row).model_dump(), client_secret=secret)


async def provision_from_secret_store(rt: HubRuntime) -> int:
    """Dev convenience: create (or re-key) the clients listed at "hub/clients" = {module: secret}.

    A client an admin created keeps its secret; the store only manages the clients it created.
    """
    raw = await asyncio.to_thread(rt.settings.secret_store().get, CLIENTS_PATH)
    changed = 0
    for client_id, secret in sorted((raw or {}).items()):
        if not MODULE_NAME.fullmatch(client_id) or len(secret) < 16:
            log.warning("ignoring secret-store client %r: needs a module name and a secret of 16+ chars",
                        client_id[:40])
            continue
        async with rt.db.transaction() as session:
            row = await session.get(ServiceClient, client_id)
            if row is not None and (row.source != "secret-store" or
                                    await asyncio.to_thread(verify_secret, secret, row.secret_hash)):
                continue
            hashed = await asyncio.to_thread(hash_secret, secret)
            stmt = pg_insert(ServiceClient).values(client_id=client_id, secret_hash=hashed, scopes=None,
                                                   source="secret-store", description="from the secret store")
            await session.execute(stmt.on_conflict_do_update(
                index_elements=["client_id"], set_={"secret_hash": hashed, "updated_at": datetime.now(UTC)},
                where=ServiceClient.source == "secret-store"))
            changed += 1
    if changed:
        log.info("provisioned %d service client(s) from the secret store", changed)
    return changed


# -- tokens -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TokenRequest:
    """A parsed client-credentials request (the HTTP layer fills it from the form and Basic header)."""

    grant_type: str
    client_id: str
    client_secret: str
    scope: str | None = None
    audience: str | None = None
    basic: bool = False


def limiters(rt: HubRuntime) -> tuple[FixedWindow, FixedWindow]:
    s = rt.settings
    return (
        FixedWindow(rt.store.redis, rt.store.key("ratelimit", "token"), limit=s.token_rate_limit,
                    window=s.token_rate_window, what="token requests"),
        FixedWindow(rt.store.redis, rt.store.key("ratelimit", "token-failures"), limit=s.token_failure_limit,
                    window=s.token_failure_window, what="failed client authentications"),
    )


async def issue_token(rt: HubRuntime, req: TokenRequest, *, client_addr: str) -> TokenResponse:
    requests, failures = limiters(rt)
    await requests.hit(client_addr)
    await failures.check(client_addr)
    if req.grant_type != "client_credentials":
        raise OAuthError("unsupported_grant_type", "only grant_type=client_credentials is supported")
    async with rt.db.session() as session:
        row = await session.get(ServiceClient, req.client_id) if MODULE_NAME.fullmatch(req.client_id) else None
    stored = row.secret_hash if row is not None else _DUMMY_HASH
    ok = await asyncio.to_thread(verify_secret, req.client_secret, stored)
    if row is None or not ok:
        with contextlib.suppress(RateLimited):
            await failures.hit(client_addr)
        log.info("client authentication failed for %r from %s", req.client_id[:40], client_addr)
        raise invalid_client()

    allowed: set[str]
    if row.scopes is not None:
        allowed = {str(s) for s in row.scopes}
    else:
        manifest = await rt.store.known_manifest(row.client_id)
        allowed = set(manifest.scopes) if manifest else set()
    requested = (req.scope or "").split()
    for s in requested:
        if not SCOPE.fullmatch(s):
            raise OAuthError("invalid_scope", f"scope {s[:40]!r} is malformed")
    granted = sorted(allowed & set(requested)) if requested else sorted(allowed)
    if requested and not granted:
        raise OAuthError("invalid_scope", f"none of the requested scopes is granted to {row.client_id}")

    audience = req.audience or rt.settings.token_audience
    if not AUDIENCE.fullmatch(audience) or (
            audience not in rt.settings.token_audiences and audience not in await rt.store.known_module_names()):
        raise OAuthError("invalid_target", f"audience {audience[:40]!r} is not one this hub issues tokens for")

    now = int(time.time())
    ttl = rt.settings.token_ttl
    token = rt.keys.sign({
        "iss": HUB_ISSUER, "sub": row.client_id, "aud": audience, "scope": " ".join(granted),
        "token_use": "service", "client_id": row.client_id, "iat": now, "nbf": now, "exp": now + ttl,
        "jti": uuid.uuid4().hex,
    })
    async with rt.db.transaction() as session:
        await session.execute(update(ServiceClient).where(ServiceClient.client_id == row.client_id)
                              .values(last_used_at=datetime.now(UTC)))
    return TokenResponse(access_token=token, expires_in=ttl, scope=" ".join(granted))
