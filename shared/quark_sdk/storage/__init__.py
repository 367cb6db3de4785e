"""Object storage for services that keep blobs (the media service): one interface, two drivers.

:class:`LocalStorage` keeps objects on disk (development, single-node installs);
:class:`S3Storage` talks to any S3-compatible server (MinIO, AWS S3, Ceph). Both
stream: an upload given as an async iterable is never held whole in memory, and an
upload that exceeds ``max_size`` (or fails half-way) leaves nothing behind, so a
service can enforce quotas without cleaning up after itself.

Keys are validated identically by both drivers (see :func:`validate_key`) so a key
that works in development cannot escape the storage root or mean something else
in production. Pick a driver from configuration with :func:`storage_from_url`.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

from quark_sdk.storage.base import (
    DEFAULT_CONTENT_TYPE,
    MAX_KEY_BYTES,
    MIN_PART_SIZE,
    ObjectStorage,
    StoredObject,
    validate_key,
    validate_prefix,
)
from quark_sdk.storage.local import LocalStorage
from quark_sdk.storage.s3 import S3Storage

__all__ = ["DEFAULT_CONTENT_TYPE", "MAX_KEY_BYTES", "MIN_PART_SIZE", "LocalStorage", "ObjectStorage", "S3Storage",
           "StoredObject", "storage_from_url", "validate_key", "validate_prefix"]

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})
_URL_HELP = "use file:///absolute/path or s3://ACCESS:SECRET@host:port/bucket?secure=false&region=..."


def _redact(url: str) -> str:
    """The URL without its secret key, safe for error messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username}:***@{parts.netloc.rpartition('@')[2]}"
    return parts._replace(netloc=netloc).geturl()


def storage_from_url(url: str) -> ObjectStorage:
    """Build a driver from one configuration string, failing with a message that says what is wrong."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"invalid storage URL {_redact(url)!r}: {exc}; {_URL_HELP}") from None
    scheme = parts.scheme.lower()
    if scheme == "file":
        path = unquote(parts.path)
        if parts.netloc not in ("", "localhost") or not path.startswith("/"):
            raise ValueError(
                f"invalid storage URL {url!r}: a file URL needs an absolute path, e.g. file:///var/lib/quark"
            )
        if parts.query or parts.fragment:
            raise ValueError(f"invalid storage URL {url!r}: file URLs take no query or fragment")
        return LocalStorage(Path(path))
    if scheme == "s3":
        shown = _redact(url)
        if not parts.username or parts.password is None:
            raise ValueError(f"invalid storage URL {shown!r}: credentials missing; {_URL_HELP}")
        if not parts.hostname:
            raise ValueError(f"invalid storage URL {shown!r}: host missing; {_URL_HELP}")
        bucket = parts.path.strip("/")
        if not bucket or "/" in bucket:
            raise ValueError(f"invalid storage URL {shown!r}: the path must be exactly one bucket name; {_URL_HELP}")
        params = parse_qs(parts.query, keep_blank_values=True)
        unknown = sorted(set(params) - {"secure", "region"})
        if unknown:
            raise ValueError(f"invalid storage URL {shown!r}: unknown parameter(s) {', '.join(unknown)}")
        secure_text = params.get("secure", ["false"])[-1].lower()
        if secure_text not in _TRUE | _FALSE:
            raise ValueError(f"invalid storage URL {shown!r}: secure must be true or false, not {secure_text!r}")
        region = params.get("region", [""])[-1] or None
        host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
        endpoint = host if port is None else f"{host}:{port}"
        return S3Storage(
            endpoint,
            unquote(parts.username),
            unquote(parts.password),
            bucket,
            secure=secure_text in _TRUE,
            region=region,
        )
    raise ValueError(f"unsupported storage URL {_redact(url)!r}: {_URL_HELP}")
