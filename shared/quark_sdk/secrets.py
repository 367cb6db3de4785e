"""Where services keep keys and credentials they generate or are given (JWT signing keys, client secrets).

Two drivers behind one small synchronous interface, chosen by :func:`load_secret_store`:

* :class:`EnvFileSecrets` - development and single-node installs: a JSON file per
  secret under the data directory (mode 0600), overridable per secret by an
  environment variable so containers can inject secrets without a volume.
* :class:`VaultSecrets` - production: HashiCorp Vault's KV v2 engine, authenticated
  by a token or by AppRole (re-logging in once when the AppRole token has expired).

Secrets are flat ``dict[str, str]`` maps addressed by a path such as ``auth/jwt-keys``.
Error messages name the store and path, never a secret value or credential.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol, TypeVar

import hvac
import hvac.exceptions
import requests

T = TypeVar("T")

_PATH_SEGMENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
ENV_PREFIX = "QUARK_SECRET_"


class SecretStoreError(Exception):
    """The secret store is unreachable, refused us, or holds something that is not a flat string map."""


class SecretStore(Protocol):
    """Read and write flat string maps by path; ``get`` returns None for a secret that does not exist."""

    def get(self, path: str) -> dict[str, str] | None: ...

    def put(self, path: str, values: dict[str, str]) -> None: ...


def validate_secret_path(path: str) -> str:
    """Return ``path`` or raise ValueError: segments of letters, digits, '.', '_', '-', never '..' or empty."""
    segments = path.split("/") if isinstance(path, str) else [""]
    if not all(_PATH_SEGMENT.fullmatch(s) for s in segments):
        raise ValueError(
            f"invalid secret path {str(path)[:80]!r}: use '/'-separated segments of letters, digits, '.', '_' and '-'"
            " (not starting with '.' or '-')"
        )
    return path


def env_var_for(path: str) -> str:
    """The environment variable that overrides ``path``: ``auth/jwt-keys`` -> ``QUARK_SECRET_AUTH_JWT_KEYS``."""
    return ENV_PREFIX + validate_secret_path(path).upper().replace("/", "_").replace("-", "_")


def _string_map(value: Any, where: str) -> dict[str, str]:
    """Secrets are flat string maps everywhere, so a consumer never has to guess a value's type."""
    if not isinstance(value, dict):
        raise SecretStoreError(f"{where} does not hold a JSON object")
    bad = sorted(str(k) for k, v in value.items() if not isinstance(k, str) or not isinstance(v, str))
    if bad:
        raise SecretStoreError(f"{where}: values must be strings (offending keys: {', '.join(bad)})")
    return dict(value)


class EnvFileSecrets:
    """Secrets as ``<directory>/<path>.json`` files, each overridable by ``QUARK_SECRET_<PATH>``.

    The environment variable wins so a deployment can pin a secret without touching
    the data directory; ``put`` still writes the file (the variable keeps winning).
    Files are written atomically (temp file + rename) with mode 0600 in 0700
    directories, so a crash never leaves a half-written key and other users cannot read it.
    """

    def __init__(self, directory: Path, environ: Mapping[str, str] = os.environ) -> None:
        self.directory = Path(directory)
        self._environ = environ

    def __repr__(self) -> str:
        return f"EnvFileSecrets({str(self.directory)!r})"

    def _file(self, path: str) -> Path:
        *parents, name = validate_secret_path(path).split("/")
        return self.directory.joinpath(*parents, name + ".json")

    def get(self, path: str) -> dict[str, str] | None:
        var = env_var_for(path)
        raw = self._environ.get(var)
        if raw is not None:
            try:
                parsed = json.loads(raw)
            except ValueError:
                raise SecretStoreError(f"environment variable {var} is not valid JSON") from None
            return _string_map(parsed, f"environment variable {var}")
        file = self._file(path)
        try:
            text = file.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise SecretStoreError(f"cannot read secret file {file}: {exc.strerror}") from exc
        try:
            parsed = json.loads(text)
        except ValueError:
            raise SecretStoreError(f"secret file {file} is not valid JSON") from None
        return _string_map(parsed, f"secret file {file}")

    def put(self, path: str, values: dict[str, str]) -> None:
        values = _string_map(values, f"secret {path!r}")
        file = self._file(path)
        self._make_private_dirs(file.parent)
        fd, tmp = tempfile.mkstemp(dir=file.parent, prefix=f".{file.name}.", suffix=".tmp")  # created 0600
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(values, fh, indent=2, sort_keys=True)
                fh.write("\n")
                fh.flush()
                os.fsync(fh.fileno())
            os.chmod(tmp, 0o600)
            os.replace(tmp, file)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    def _make_private_dirs(self, leaf: Path) -> None:
        """Create ``leaf`` and make the secret directory and everything below it 0700."""
        leaf.mkdir(mode=0o700, parents=True, exist_ok=True)
        current = leaf
        while True:
            os.chmod(current, 0o700)
            if current == self.directory or self.directory not in current.parents:
                break
            current = current.parent


class VaultSecrets:
    """Secrets in Vault's KV v2 engine at ``<mount>/data/<prefix>/<path>``.

    Authenticates with ``token``, or with AppRole (``role_id`` + ``secret_id``) on first
    use; an AppRole token that Vault later rejects triggers one fresh login. Any
    failure to reach or authenticate to Vault raises :class:`SecretStoreError` naming
    the address, so a misconfigured service fails at start with a readable line.
    """

    def __init__(
        self,
        addr: str,
        *,
        token: str | None = None,
        role_id: str | None = None,
        secret_id: str | None = None,
        mount: str = "secret",
        prefix: str = "quark",
        verify: bool | str = True,
        timeout: float = 10.0,
    ) -> None:
        if bool(role_id) != bool(secret_id):
            raise SecretStoreError(f"Vault at {addr}: AppRole needs both a role_id and a secret_id")
        if not token and not role_id:
            raise SecretStoreError(f"Vault at {addr}: no credentials (give a token, or an AppRole role_id + secret_id)")
        self.addr = addr.rstrip("/")
        self.mount = mount.strip("/")
        self.prefix = prefix.strip("/")
        self._role_id = role_id
        self._secret_id = secret_id
        self._uses_approle = bool(role_id)
        # An explicit token ("" for AppRole) stops hvac from falling back to VAULT_TOKEN / ~/.vault-token.
        self._client = hvac.Client(
            url=self.addr, token="" if self._uses_approle else token, verify=verify, timeout=timeout
        )
        self._logged_in = not self._uses_approle

    def __repr__(self) -> str:
        return f"VaultSecrets({self.addr!r}, mount={self.mount!r}, prefix={self.prefix!r})"

    def _full_path(self, path: str) -> str:
        validate_secret_path(path)
        return f"{self.prefix}/{path}" if self.prefix else path

    def _login(self) -> None:
        try:
            self._client.auth.approle.login(role_id=self._role_id, secret_id=self._secret_id, use_token=True)
        except (hvac.exceptions.VaultError, requests.exceptions.RequestException) as exc:
            raise self._error("AppRole login failed", exc) from exc
        self._logged_in = True

    def _call(self, what: str, fn: Callable[[], T]) -> T:
        """Run one Vault request with login, one AppRole re-login on 401/403, and error translation."""
        if not self._logged_in:
            self._login()
        try:
            try:
                return fn()
            except (hvac.exceptions.Forbidden, hvac.exceptions.Unauthorized):
                if not self._uses_approle:
                    raise
                self._login()  # the AppRole token may simply have expired
                return fn()
        except hvac.exceptions.InvalidPath as exc:
            if any("no handler for route" in str(e) for e in (exc.errors or [])):
                # A 404 from a mount that does not exist is misconfiguration, not a missing secret.
                raise self._error(f"{what}: no KV v2 engine at mount {self.mount!r}", exc) from exc
            raise
        except (hvac.exceptions.VaultError, requests.exceptions.RequestException) as exc:
            raise self._error(what, exc) from exc

    def _error(self, what: str, exc: Exception) -> SecretStoreError:
        if isinstance(exc, requests.exceptions.RequestException):
            return SecretStoreError(f"Vault at {self.addr} is unreachable ({what}): {type(exc).__name__}")
        if isinstance(exc, hvac.exceptions.Forbidden | hvac.exceptions.Unauthorized):
            return SecretStoreError(f"Vault at {self.addr} denied access ({what}): check the token or AppRole policy")
        errors = getattr(exc, "errors", None) or [str(exc)]
        return SecretStoreError(f"Vault at {self.addr} failed ({what}): {'; '.join(map(str, errors))}")

    def get(self, path: str) -> dict[str, str] | None:
        full = self._full_path(path)
        where = f"{self.mount}/{full}"
        try:
            response = self._call(
                f"reading {where}",
                lambda: self._client.secrets.kv.v2.read_secret_version(
                    path=full, mount_point=self.mount, raise_on_deleted_version=True
                ),
            )
        except hvac.exceptions.InvalidPath:
            return None  # never written, or its latest version was deleted
        try:
            data = response["data"]["data"]
        except (KeyError, TypeError):
            raise SecretStoreError(f"Vault at {self.addr} returned an unexpected response for {where}") from None
        return _string_map(data, f"Vault secret {where}")

    def put(self, path: str, values: dict[str, str]) -> None:
        full = self._full_path(path)
        values = _string_map(values, f"secret {path!r}")
        where = f"{self.mount}/{full}"
        try:
            self._call(
                f"writing {where}",
                lambda: self._client.secrets.kv.v2.create_or_update_secret(
                    path=full, secret=values, mount_point=self.mount
                ),
            )
        except hvac.exceptions.InvalidPath as exc:
            raise self._error(f"writing {where}", exc) from exc


def load_secret_store(environ: Mapping[str, str] = os.environ, data_dir: Path | None = None) -> SecretStore:
    """Vault when ``QUARK_VAULT_ADDR`` is set, otherwise files under ``data_dir`` (the secrets directory itself).

    Vault settings: ``QUARK_VAULT_TOKEN``, or ``QUARK_VAULT_ROLE_ID`` + ``QUARK_VAULT_SECRET_ID``;
    ``QUARK_VAULT_MOUNT`` (default ``secret``), ``QUARK_VAULT_PREFIX`` (default ``quark``),
    ``QUARK_VAULT_CACERT`` (CA bundle for a private CA). Without ``data_dir`` the files
    live in ``$QUARK_DATA_DIR/secrets`` (default ``.quark/secrets``).
    """
    addr = environ.get("QUARK_VAULT_ADDR", "").strip()
    if addr:
        return VaultSecrets(
            addr,
            token=environ.get("QUARK_VAULT_TOKEN") or None,
            role_id=environ.get("QUARK_VAULT_ROLE_ID") or None,
            secret_id=environ.get("QUARK_VAULT_SECRET_ID") or None,
            mount=environ.get("QUARK_VAULT_MOUNT") or "secret",
            prefix=environ.get("QUARK_VAULT_PREFIX", "quark"),
            verify=environ.get("QUARK_VAULT_CACERT") or True,
        )
    directory = data_dir if data_dir is not None else Path(environ.get("QUARK_DATA_DIR") or ".quark") / "secrets"
    return EnvFileSecrets(directory, environ)
