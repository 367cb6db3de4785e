"""Password hashing (bcrypt) and the password policy.

bcrypt only reads the first 72 bytes of its input (bcrypt 5 refuses longer input outright), while the
policy allows up to 128 bytes. Rather than silently truncating, every password is pre-hashed:
``bcrypt(base64(HMAC-SHA256(key, password)))``. The base64 form is 44 ASCII bytes (no NUL bytes, which
bcrypt would stop at) and keeps all of the password's entropy. The HMAC key is a fixed, public,
Quark-specific constant: it is not a pepper, it only makes the pre-hash differ from a bare SHA-256 so
hashes leaked from other sites cannot be "shucked" against ours.

Hashing runs in a worker thread (bcrypt releases the GIL), so logins do not stall the event loop.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import threading

import bcrypt

from quark_sdk.errors import InvalidInput

_PREHASH_KEY = b"quark-auth/password/v1"

MIN_LENGTH = 10
MAX_BYTES = 128

# The handful of passwords every credential-stuffing list starts with (all >= 10 characters).
_COMMON = frozenset({
    "1234567890", "12345678910", "0123456789", "qwertyuiop", "password12", "password123", "password1234",
    "iloveyou12", "1q2w3e4r5t", "qwerty1234", "qwertyuiop1", "abcdefghij", "abcd123456", "passw0rd12",
    "9876543210", "letmein123", "welcome123", "administrator", "changeme123", "0987654321", "asdfghjkl1",
})


def _prehash(password: str) -> bytes:
    digest = hmac.new(_PREHASH_KEY, password.encode("utf-8"), hashlib.sha256).digest()
    return base64.b64encode(digest)


class PasswordHasher:
    """bcrypt with a configurable cost; `checks` counts every verification, real or dummy.

    Why the counter: a login for an unknown account must still pay for one bcrypt check (against a
    dummy hash), so response time does not reveal whether the account exists. Tests assert on the
    counter rather than on wall time.
    """

    def __init__(self, rounds: int = 12) -> None:
        self.rounds = rounds
        self.checks = 0
        self._lock = threading.Lock()
        self._dummy = bcrypt.hashpw(b"quark-dummy-password-for-timing", bcrypt.gensalt(rounds)).decode()

    def hash_sync(self, password: str) -> str:
        return bcrypt.hashpw(_prehash(password), bcrypt.gensalt(self.rounds)).decode("ascii")

    def verify_sync(self, password: str, hashed: str | None) -> bool:
        """Check `password`; with `hashed=None` check against the dummy hash (always False)."""
        with self._lock:
            self.checks += 1
        target = (hashed or self._dummy).encode("ascii")
        try:
            ok = bcrypt.checkpw(_prehash(password), target)
        except ValueError:  # a malformed stored hash: refuse, never crash
            return False
        return ok and hashed is not None

    async def hash(self, password: str) -> str:
        return await asyncio.to_thread(self.hash_sync, password)

    async def verify(self, password: str, hashed: str | None) -> bool:
        return await asyncio.to_thread(self.verify_sync, password, hashed)

    def needs_rehash(self, hashed: str) -> bool:
        """True when the stored hash used another cost than the configured one (upgraded at next login)."""
        try:
            return int(hashed.split("$")[2]) != self.rounds
        except (IndexError, ValueError):
            return True


def check_policy(password: str, *, username: str | None = None, email: str | None = None,
                 field: str = "password") -> None:
    """Raise InvalidInput with one clear message when `password` breaks the policy."""
    size = len(password.encode("utf-8"))
    if len(password) < MIN_LENGTH:
        raise InvalidInput(f"password must be at least {MIN_LENGTH} characters long", field=field)
    if size > MAX_BYTES:
        raise InvalidInput(f"password must be at most {MAX_BYTES} bytes (UTF-8)", field=field)
    if len(set(password)) == 1:
        raise InvalidInput("password must not be one repeated character", field=field)
    folded = password.casefold()
    for name, value in (("username", username), ("email address", email)):
        if value and folded == value.casefold():
            raise InvalidInput(f"password must not be your {name}", field=field)
    if folded in _COMMON:
        raise InvalidInput("password is too common", field=field)
