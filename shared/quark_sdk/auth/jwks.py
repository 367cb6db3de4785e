"""An issuer's published public keys, fetched over HTTP and cached (`JWKSCache`)."""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable
from typing import Any

import httpx
import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

# Own section whether or not ruff is told quark_sdk is first-party:
# isort: split
from quark_sdk.auth.keys import _MIN_RSA_BITS, ALLOWED_ALGORITHMS
from quark_sdk.errors import Unauthenticated

log = logging.getLogger("quark.auth")


def _parse_jwks(data: Any) -> dict[str, jwt.PyJWK]:
    """Usable verification keys by kid; unusable entries are skipped, not fatal.

    Keys whose algorithm is not asymmetric-allowed (e.g. ``oct``/HS256) are dropped here,
    so they can never be selected for verification.
    """
    if not isinstance(data, dict) or not isinstance(data.get("keys"), list):
        raise ValueError("response is not a JWK set")
    keys: dict[str, jwt.PyJWK] = {}
    for raw in data["keys"]:
        if not isinstance(raw, dict):
            continue
        kid = raw.get("kid")
        if not isinstance(kid, str) or not kid or raw.get("use", "sig") != "sig":
            continue
        try:
            jwk = jwt.PyJWK(raw)
        except jwt.PyJWTError as exc:
            log.warning("skipping unusable JWK %r: %s", kid, exc)
            continue
        if jwk.algorithm_name not in ALLOWED_ALGORITHMS:
            log.warning("skipping JWK %r with disallowed algorithm %r", kid, jwk.algorithm_name)
            continue
        if isinstance(jwk.key, rsa.RSAPublicKey) and jwk.key.key_size < _MIN_RSA_BITS:
            log.warning("skipping JWK %r: RSA key too small", kid)
            continue
        keys[kid] = jwk
    return keys


class JWKSCache:
    """An issuer's public keys, fetched over HTTP and cached.

    Why: verification must not call the issuer per request, yet must notice rotations.
    Keys are refreshed after ``ttl`` seconds or when an unknown ``kid`` shows up; refreshes
    are rate limited by ``min_refresh_interval`` (so forged kids cannot hammer the issuer)
    and concurrent callers share one fetch. When a fetch fails the last good key set keeps
    being served.
    """

    def __init__(
        self,
        url: str,
        *,
        client: httpx.AsyncClient | None = None,
        ttl: float = 300,
        min_refresh_interval: float = 5,
        timeout: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.url = url
        self.ttl = ttl
        self.min_refresh_interval = min_refresh_interval
        self.timeout = timeout
        self.fetch_count = 0
        """Fetch attempts so far (successful or not); useful for metrics and tests."""
        self._client = client
        self._clock = clock
        self._keys: dict[str, jwt.PyJWK] | None = None
        self._fetched_at = -math.inf
        self._last_attempt = -math.inf
        self._generation = 0
        self._lock = asyncio.Lock()

    @property
    def kids(self) -> frozenset[str]:
        """The kids currently cached (empty before the first successful fetch)."""
        return frozenset(self._keys or ())

    async def get_key(self, kid: str) -> jwt.PyJWK:
        keys = self._keys
        if keys is not None and kid in keys and self._clock() - self._fetched_at < self.ttl:
            return keys[kid]
        seen = self._generation
        async with self._lock:
            # Whoever held the lock before us may already have refreshed: share its result.
            if self._generation == seen and self._clock() - self._last_attempt >= self.min_refresh_interval:
                await self._refresh()
        if self._keys is None:
            raise Unauthenticated("cannot verify token: key set unavailable")
        key = self._keys.get(kid)
        if key is None:
            raise Unauthenticated("unknown signing key")
        return key

    async def refresh(self) -> None:
        """Fetch now (e.g. at startup to warm the cache); failures keep the old keys."""
        async with self._lock:
            await self._refresh()

    async def _refresh(self) -> None:
        self._last_attempt = self._clock()
        self.fetch_count += 1
        try:
            keys = _parse_jwks(await self._fetch())
        except (httpx.HTTPError, ValueError) as exc:
            state = "serving cached keys" if self._keys is not None else "no cached keys"
            log.warning("JWKS fetch from %s failed (%s): %s", self.url, state, exc)
            return
        else:
            self._keys = keys
            self._fetched_at = self._clock()
        finally:
            # Bumped only once the attempt is over, so callers queued behind it reuse its outcome.
            self._generation += 1

    async def _fetch(self) -> Any:
        if self._client is not None:
            response = await self._client.get(self.url, timeout=self.timeout)
        else:
            # Fetches are rare (every ttl at most), so a short-lived client avoids lifecycle plumbing.
            async with httpx.AsyncClient(timeout=self.timeout) as client:
                response = await client.get(self.url)
        response.raise_for_status()
        return response.json()
