"""The auth service's signing keys: persisted in the secret store, rotated on a schedule, shared by instances.

Stored at ``settings.signing_keys_path`` (``auth/signing-keys``) as ``{"keyset": <json>}`` because
secrets are flat string maps: ``.quark/secrets`` in embedded mode, Vault KV v2 in the fleet.

Besides the SDK's :class:`SigningKeySet` (active key + retired keys still within their overlap) the
store holds the *next* key, which is already published in the JWKS but does not sign yet. Rotation
promotes it. Why: every verifier (and every auth instance serving the JWKS) has seen the key before
the first token signed with it exists, so a rotation never causes a burst of "unknown kid" refusals.

Instances re-read the store every ``key_refresh_interval``; the first one to notice the active key is
older than ``rotate_after`` rotates under a Redis lock. An instance that has not re-read yet keeps
signing with the old key for at most ``key_refresh_interval``, which is why the overlap must be at least
``access_token_ttl + key_refresh_interval`` (checked by the settings).
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

import httpx
import redis.asyncio as aioredis

from quark_sdk.auth import Algorithm, JWKSCache, SigningKey, SigningKeySet, TokenVerifier
from quark_sdk.secrets import SecretStore

log = logging.getLogger("quark.auth.keys")

Clock = Callable[[], float]


class KeyManager:
    """Loads, creates, rotates and serves the signing keys of this auth instance."""

    def __init__(self, store: SecretStore, *, path: str, algorithm: Algorithm, overlap: float,
                 rotate_after: float, redis: aioredis.Redis | None = None, lock_key: str = "auth:keys:lock",
                 clock: Clock = time.time) -> None:
        self.store = store
        self.path = path
        self.algorithm = algorithm
        self.overlap = overlap
        self.rotate_after = rotate_after
        self.redis = redis
        self.lock_key = lock_key
        self.clock = clock
        self._keyset: SigningKeySet | None = None
        self._next: SigningKey | None = None
        self._clients: list[httpx.AsyncClient] = []

    # -- state ---------------------------------------------------------------------------------

    @property
    def keyset(self) -> SigningKeySet:
        if self._keyset is None:
            raise RuntimeError("signing keys not loaded; call await KeyManager.load()")
        return self._keyset

    @property
    def active_kid(self) -> str:
        return self.keyset.active.kid

    def sign(self, claims: dict[str, Any]) -> str:
        return self.keyset.sign(claims)

    def jwks(self) -> dict[str, Any]:
        """Active + retired-within-overlap + next key (public parts only)."""
        doc = self.keyset.jwks(now=self.clock())
        if self._next is not None:
            doc["keys"].append(self._next.to_public_jwk())
        return doc

    # -- persistence ---------------------------------------------------------------------------

    def _decode(self, raw: dict[str, str] | None) -> tuple[SigningKeySet, SigningKey | None] | None:
        if not raw or "keyset" not in raw:
            return None
        data = json.loads(raw["keyset"])
        keyset = SigningKeySet.from_dict(data)
        # The configured overlap wins over a shorter stored one (e.g. after raising access_token_ttl).
        keyset.overlap = max(keyset.overlap, self.overlap)
        nxt = SigningKey.from_dict(data["next"]) if data.get("next") else None
        return keyset, nxt

    def _encode(self, keyset: SigningKeySet, nxt: SigningKey | None) -> dict[str, str]:
        data = keyset.to_dict()
        data["next"] = nxt.to_dict() if nxt is not None else None
        return {"keyset": json.dumps(data)}

    async def _read(self) -> tuple[SigningKeySet, SigningKey | None] | None:
        return self._decode(await asyncio.to_thread(self.store.get, self.path))

    async def _write(self, keyset: SigningKeySet, nxt: SigningKey | None) -> None:
        await asyncio.to_thread(self.store.put, self.path, self._encode(keyset, nxt))

    async def load(self) -> None:
        """Read the key set; the first instance ever to start creates it (under the lock)."""
        found = await self._read()
        if found is None:
            async with self._locked():
                found = await self._read()  # another instance may have won the race
                if found is None:
                    now = self.clock()
                    keyset = SigningKeySet(SigningKey.generate(self.algorithm, now=now), overlap=self.overlap)
                    found = (keyset, SigningKey.generate(self.algorithm, now=now))
                    await self._write(*found)
                    log.info("created signing keys at %s (active kid %s)", self.path, keyset.active.kid)
        self._keyset, self._next = found

    async def refresh(self) -> None:
        """Pick up a rotation another instance made (failures keep the keys we have)."""
        try:
            found = await self._read()
        except Exception as exc:
            log.warning("cannot re-read signing keys from %s: %r", self.path, exc)
            return
        if found is not None:
            self._keyset, self._next = found

    def rotation_due(self) -> bool:
        return self.clock() - self.keyset.active.created_at >= self.rotate_after

    async def rotate(self, *, force: bool = False) -> bool:
        """Promote the next key to active and retire the current one; returns whether it rotated."""
        async with self._locked():
            await self.refresh()
            if not force and not self.rotation_due():
                return False  # another instance rotated while we waited for the lock
            now = self.clock()
            old = self.keyset
            new_active = replace(self._next, created_at=now) if self._next else SigningKey.generate(
                self.algorithm, now=now)
            keyset = SigningKeySet(new_active, [replace(old.active, retired_at=now), *old.retired],
                                   overlap=max(old.overlap, self.overlap))
            keyset.prune(now=now)
            nxt = SigningKey.generate(self.algorithm, now=now)
            await self._write(keyset, nxt)
            self._keyset, self._next = keyset, nxt
            log.info("rotated signing keys: active kid %s, retired %s", new_active.kid, old.active.kid)
            return True

    async def tick(self) -> None:
        """One round of the background job: re-read, and rotate when due."""
        await self.refresh()
        if self.rotation_due():
            await self.rotate()

    def _locked(self) -> _RedisLock:
        return _RedisLock(self.redis, self.lock_key)

    # -- local verification ----------------------------------------------------------------------

    def verifier(self, audience: str, *, issuer: str = "quark-auth") -> TokenVerifier:
        """A TokenVerifier over this manager's own JWKS, with no network hop.

        Why: the auth service verifies the tokens it issued itself, with the same SDK code every other
        service uses (algorithm allow-list, aud, exp, ...), fed from memory instead of HTTP.
        """
        transport = httpx.MockTransport(lambda request: httpx.Response(200, json=self.jwks()))
        client = httpx.AsyncClient(transport=transport, base_url="http://auth.local")
        self._clients.append(client)
        cache = JWKSCache("http://auth.local/jwks.json", client=client, ttl=5, min_refresh_interval=0.5)
        return TokenVerifier({issuer: cache}, audience=audience)

    async def aclose(self) -> None:
        for client in self._clients:
            await client.aclose()
        self._clients.clear()


class _RedisLock:
    """A best-effort cross-instance lock (SET NX PX); without Redis it is a no-op."""

    def __init__(self, redis: aioredis.Redis | None, key: str, ttl_ms: int = 15000) -> None:
        self.redis = redis
        self.key = key
        self.ttl_ms = ttl_ms
        self.token = secrets.token_hex(8)

    async def __aenter__(self) -> None:
        if self.redis is None:
            return
        for _ in range(300):
            if await self.redis.set(self.key, self.token, nx=True, px=self.ttl_ms):
                return
            await asyncio.sleep(0.05)
        log.warning("signing-key lock %s not acquired in 15s; proceeding", self.key)

    async def __aexit__(self, *exc: object) -> None:
        if self.redis is None:
            return
        release: Awaitable[Any] = self.redis.eval(
            "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0",
            1, self.key, self.token,
        )
        await release
