"""Secret stores: the env/file driver on a real directory, the Vault driver over real HTTP.

Vault itself cannot run on this machine, so the Vault driver is tested against a
protocol-level double: a small stdlib HTTP server on a free 127.0.0.1 port that
speaks the parts of Vault's HTTP API the driver uses - KV v2 reads and writes at
``/v1/<mount>/data/<path>`` (with Vault's response shapes, 404 for a missing or
deleted secret), ``X-Vault-Token`` checking (403 "permission denied") and AppRole
login at ``/v1/auth/approle/login``. The driver goes through hvac and requests
exactly as it would against a real Vault.
"""

from __future__ import annotations

import json
import os
import socket
import stat
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from quark_sdk.secrets import (
    EnvFileSecrets,
    SecretStoreError,
    VaultSecrets,
    env_var_for,
    load_secret_store,
)

ROOT_TOKEN = "s.root-token-for-tests"
ROLE_ID, SECRET_ID = "role-1234", "secret-5678"


# --------------------------------------------------------------------------- the Vault double


@dataclass
class FakeVault:
    """State of the double; the handler below is its HTTP face."""

    mounts: set[str] = field(default_factory=lambda: {"secret"})
    tokens: set[str] = field(default_factory=lambda: {ROOT_TOKEN})
    approles: dict[str, str] = field(default_factory=lambda: {ROLE_ID: SECRET_ID})
    kv: dict[tuple[str, str], list[dict[str, Any]]] = field(default_factory=dict)
    log: list[tuple[str, str]] = field(default_factory=list)
    logins: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    url: str = ""

    def seed(self, mount: str, path: str, data: dict[str, Any]) -> None:
        with self.lock:
            self._write(mount, path, data)

    def soft_delete(self, mount: str, path: str) -> None:
        with self.lock:
            self.kv[(mount, path)][-1]["metadata"]["deletion_time"] = _now()

    def _write(self, mount: str, path: str, data: dict[str, Any]) -> dict[str, Any]:
        versions = self.kv.setdefault((mount, path), [])
        metadata = {
            "created_time": _now(),
            "custom_metadata": None,
            "deletion_time": "",
            "destroyed": False,
            "version": len(versions) + 1,
        }
        versions.append({"data": dict(data), "metadata": metadata})
        return metadata

    def handle(self, method: str, raw_path: str, token: str | None, body: Any) -> tuple[int, dict[str, Any]]:
        path = urlsplit(raw_path).path
        with self.lock:
            self.log.append((method, path))
            if method == "POST" and path == "/v1/auth/approle/login":
                if not isinstance(body, dict) or self.approles.get(str(body.get("role_id"))) != body.get("secret_id"):
                    return 400, {"errors": ["invalid role or secret ID"]}
                issued = f"s.approle-{uuid.uuid4().hex}"
                self.tokens.add(issued)
                self.logins += 1
                return 200, _envelope(
                    auth={
                        "client_token": issued,
                        "accessor": uuid.uuid4().hex,
                        "policies": ["default", "quark"],
                        "token_policies": ["default", "quark"],
                        "lease_duration": 3600,
                        "renewable": True,
                    }
                )
            if token not in self.tokens:
                return 403, {"errors": ["permission denied"]}
            mount, sep, secret_path = path.removeprefix("/v1/").partition("/data/")
            if not sep or mount not in self.mounts or not secret_path:
                return 404, {"errors": [f'no handler for route "{path.removeprefix("/v1/")}". route entry not found.']}
            if method == "GET":
                versions = self.kv.get((mount, secret_path))
                if not versions:
                    return 404, {"errors": []}
                latest = versions[-1]
                if latest["metadata"]["deletion_time"]:
                    # Vault's real answer for a deleted version: 404 *with* the metadata.
                    return 404, _envelope(data={"data": None, "metadata": latest["metadata"]})
                return 200, _envelope(data={"data": latest["data"], "metadata": latest["metadata"]})
            if method in ("POST", "PUT"):
                if not isinstance(body, dict) or not isinstance(body.get("data"), dict):
                    return 400, {"errors": ["no data provided"]}
                return 200, _envelope(data=self._write(mount, secret_path, body["data"]))
            return 405, {"errors": ["unsupported operation"]}


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def _envelope(*, data: Any = None, auth: Any = None) -> dict[str, Any]:
    return {
        "request_id": str(uuid.uuid4()),
        "lease_id": "",
        "renewable": False,
        "lease_duration": 0,
        "data": data,
        "wrap_info": None,
        "warnings": None,
        "auth": auth,
    }


def _handler_for(vault: FakeVault) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                status, payload = 400, {"errors": ["failed to parse JSON input"]}
            else:
                status, payload = vault.handle(self.command, self.path, self.headers.get("X-Vault-Token"), body)
            encoded = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(encoded)))
            self.end_headers()
            self.wfile.write(encoded)

        do_GET = do_POST = do_PUT = do_DELETE = _serve

        def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
            pass

    return Handler


@pytest.fixture
def vault() -> Iterator[FakeVault]:
    state = FakeVault()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(state))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    yield state
    server.shutdown()
    server.server_close()
    thread.join()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --------------------------------------------------------------------------- env/file driver


def test_env_var_name_mapping() -> None:
    assert env_var_for("auth/jwt-keys") == "QUARK_SECRET_AUTH_JWT_KEYS"
    assert env_var_for("hub/clients") == "QUARK_SECRET_HUB_CLIENTS"


def test_file_missing_is_none(tmp_path: Path) -> None:
    assert EnvFileSecrets(tmp_path / "secrets", environ={}).get("auth/jwt-keys") is None


def test_file_put_then_get_with_private_permissions(tmp_path: Path) -> None:
    store = EnvFileSecrets(tmp_path / "secrets", environ={})
    store.put("auth/jwt-keys", {"private_pem": "-----BEGIN PRIVATE KEY-----\n...", "kid": "k1"})
    file = tmp_path / "secrets" / "auth" / "jwt-keys.json"
    assert json.loads(file.read_text()) == {"private_pem": "-----BEGIN PRIVATE KEY-----\n...", "kid": "k1"}
    assert stat.S_IMODE(file.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "secrets").stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / "secrets" / "auth").stat().st_mode) == 0o700
    assert store.get("auth/jwt-keys") == {"private_pem": "-----BEGIN PRIVATE KEY-----\n...", "kid": "k1"}
    # A second instance (a restarted service) sees the same secret.
    assert EnvFileSecrets(tmp_path / "secrets", environ={}).get("auth/jwt-keys") == {
        "private_pem": "-----BEGIN PRIVATE KEY-----\n...",
        "kid": "k1",
    }


def test_file_put_overwrites_atomically(tmp_path: Path) -> None:
    store = EnvFileSecrets(tmp_path, environ={})
    store.put("hub/clients", {"a": "1"})
    store.put("hub/clients", {"b": "2"})
    assert store.get("hub/clients") == {"b": "2"}
    assert sorted(p.name for p in (tmp_path / "hub").iterdir()) == ["clients.json"]  # no temp files left


def test_file_put_tightens_existing_directory(tmp_path: Path) -> None:
    os.chmod(tmp_path, 0o740)
    directory = tmp_path / "secrets"
    directory.mkdir()
    os.chmod(directory, 0o740)
    EnvFileSecrets(directory, environ={}).put("x", {"k": "v"})
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert stat.S_IMODE(tmp_path.stat().st_mode) == 0o740  # parents outside the store are not ours to change


def test_env_var_wins_over_file(tmp_path: Path) -> None:
    environ = {"QUARK_SECRET_AUTH_JWT_KEYS": json.dumps({"kid": "from-env"})}
    store = EnvFileSecrets(tmp_path, environ=environ)
    store.put("auth/jwt-keys", {"kid": "from-file"})
    assert store.get("auth/jwt-keys") == {"kid": "from-env"}
    assert EnvFileSecrets(tmp_path, environ={}).get("auth/jwt-keys") == {"kid": "from-file"}


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("not json", "not valid JSON"),
        ('["a", "b"]', "does not hold a JSON object"),
        ('{"port": 5432}', "values must be strings"),
    ],
)
def test_bad_env_value_is_a_clear_error(tmp_path: Path, raw: str, message: str) -> None:
    store = EnvFileSecrets(tmp_path, environ={"QUARK_SECRET_HUB_CLIENTS": raw})
    with pytest.raises(SecretStoreError, match=message) as info:
        store.get("hub/clients")
    assert "QUARK_SECRET_HUB_CLIENTS" in str(info.value)


def test_corrupt_file_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "auth").mkdir()
    (tmp_path / "auth" / "jwt-keys.json").write_text("{truncated")
    with pytest.raises(SecretStoreError, match=r"jwt-keys\.json is not valid JSON"):
        EnvFileSecrets(tmp_path, environ={}).get("auth/jwt-keys")


def test_put_rejects_non_string_values(tmp_path: Path) -> None:
    store = EnvFileSecrets(tmp_path, environ={})
    with pytest.raises(SecretStoreError, match="values must be strings"):
        store.put("x", {"n": 1})
    assert not (tmp_path / "x.json").exists()


@pytest.mark.parametrize("path", ["", "/abs", "../escape", "a/../b", "a//b", "a/", ".hidden", "a\\b", "a\x00b"])
def test_bad_paths_are_rejected(tmp_path: Path, path: str) -> None:
    store = EnvFileSecrets(tmp_path / "secrets", environ={})
    with pytest.raises(ValueError, match="invalid secret path"):
        store.get(path)
    with pytest.raises(ValueError, match="invalid secret path"):
        store.put(path, {"k": "v"})
    assert not (tmp_path / "escape.json").exists()


# --------------------------------------------------------------------------- Vault driver


def test_vault_token_put_and_get(vault: FakeVault) -> None:
    store = VaultSecrets(vault.url, token=ROOT_TOKEN)
    assert store.get("auth/jwt-keys") is None
    store.put("auth/jwt-keys", {"kid": "k1", "private_pem": "pem"})
    assert vault.kv[("secret", "quark/auth/jwt-keys")][-1]["data"] == {"kid": "k1", "private_pem": "pem"}
    assert store.get("auth/jwt-keys") == {"kid": "k1", "private_pem": "pem"}
    store.put("auth/jwt-keys", {"kid": "k2"})
    assert store.get("auth/jwt-keys") == {"kid": "k2"}
    assert ("GET", "/v1/secret/data/quark/auth/jwt-keys") in vault.log
    assert ("POST", "/v1/secret/data/quark/auth/jwt-keys") in vault.log


def test_vault_reads_secrets_written_by_others(vault: FakeVault) -> None:
    vault.mounts.add("kv")
    vault.seed("kv", "prod/hub/clients", {"cli": "s3cret"})
    store = VaultSecrets(vault.url, token=ROOT_TOKEN, mount="kv", prefix="prod")
    assert store.get("hub/clients") == {"cli": "s3cret"}
    assert VaultSecrets(vault.url, token=ROOT_TOKEN, mount="kv", prefix="").get("prod/hub/clients") == {"cli": "s3cret"}


def test_vault_deleted_secret_is_none(vault: FakeVault) -> None:
    store = VaultSecrets(vault.url, token=ROOT_TOKEN)
    store.put("hub/clients", {"a": "b"})
    vault.soft_delete("secret", "quark/hub/clients")
    assert store.get("hub/clients") is None


def test_vault_non_string_values_are_rejected(vault: FakeVault) -> None:
    vault.seed("secret", "quark/odd", {"port": 5432})
    with pytest.raises(SecretStoreError, match="values must be strings"):
        VaultSecrets(vault.url, token=ROOT_TOKEN).get("odd")


def test_vault_wrong_token_is_a_clear_error(vault: FakeVault) -> None:
    store = VaultSecrets(vault.url, token="s.not-a-real-token")
    with pytest.raises(SecretStoreError) as info:
        store.get("auth/jwt-keys")
    assert vault.url in str(info.value)
    assert "denied" in str(info.value)
    assert "s.not-a-real-token" not in str(info.value)
    with pytest.raises(SecretStoreError, match="denied"):
        store.put("auth/jwt-keys", {"k": "v"})
    assert vault.kv == {}


def test_vault_unknown_mount_is_an_error_not_none(vault: FakeVault) -> None:
    store = VaultSecrets(vault.url, token=ROOT_TOKEN, mount="nope")
    with pytest.raises(SecretStoreError, match="no KV v2 engine at mount 'nope'"):
        store.get("auth/jwt-keys")
    with pytest.raises(SecretStoreError, match="no handler for route"):
        store.put("auth/jwt-keys", {"k": "v"})


def test_vault_approle_login(vault: FakeVault) -> None:
    store = VaultSecrets(vault.url, role_id=ROLE_ID, secret_id=SECRET_ID)
    assert vault.logins == 0  # login happens on first use, not at construction
    store.put("hub/clients", {"x": "y"})
    assert store.get("hub/clients") == {"x": "y"}
    assert vault.logins == 1
    assert vault.log[0] == ("POST", "/v1/auth/approle/login")


def test_vault_approle_relogs_in_when_its_token_is_revoked(vault: FakeVault) -> None:
    store = VaultSecrets(vault.url, role_id=ROLE_ID, secret_id=SECRET_ID)
    store.put("a", {"k": "v"})
    with vault.lock:
        vault.tokens = {ROOT_TOKEN}  # the AppRole token expired
    assert store.get("a") == {"k": "v"}
    assert vault.logins == 2


def test_vault_approle_bad_credentials(vault: FakeVault) -> None:
    store = VaultSecrets(vault.url, role_id=ROLE_ID, secret_id="wrong-secret")
    with pytest.raises(SecretStoreError, match="AppRole login failed") as info:
        store.get("a")
    assert vault.url in str(info.value)
    assert "wrong-secret" not in str(info.value)


def test_vault_unreachable_names_the_address() -> None:
    addr = f"http://127.0.0.1:{closed_port()}"
    with pytest.raises(SecretStoreError, match="unreachable") as info:
        VaultSecrets(addr, token=ROOT_TOKEN, timeout=5).get("auth/jwt-keys")
    assert addr in str(info.value)
    with pytest.raises(SecretStoreError, match="unreachable"):
        VaultSecrets(addr, role_id=ROLE_ID, secret_id=SECRET_ID, timeout=5).get("auth/jwt-keys")


def test_vault_needs_credentials() -> None:
    with pytest.raises(SecretStoreError, match="no credentials"):
        VaultSecrets("http://127.0.0.1:8200")
    with pytest.raises(SecretStoreError, match="both a role_id and a secret_id"):
        VaultSecrets("http://127.0.0.1:8200", role_id=ROLE_ID)


# --------------------------------------------------------------------------- selection


def test_load_defaults_to_files_under_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    store = load_secret_store({})
    assert isinstance(store, EnvFileSecrets)
    assert store.directory == Path(".quark") / "secrets"
    store.put("auth/jwt-keys", {"kid": "1"})
    assert (tmp_path / ".quark" / "secrets" / "auth" / "jwt-keys.json").exists()


def test_load_uses_quark_data_dir_and_explicit_dir(tmp_path: Path) -> None:
    from_env = load_secret_store({"QUARK_DATA_DIR": str(tmp_path / "data")})
    assert isinstance(from_env, EnvFileSecrets)
    assert from_env.directory == tmp_path / "data" / "secrets"
    explicit = load_secret_store({"QUARK_DATA_DIR": str(tmp_path / "data")}, tmp_path / "elsewhere")
    assert isinstance(explicit, EnvFileSecrets)
    assert explicit.directory == tmp_path / "elsewhere"


def test_load_file_store_honours_env_overrides(tmp_path: Path) -> None:
    environ = {"QUARK_SECRET_HUB_CLIENTS": '{"a": "b"}'}
    assert load_secret_store(environ, tmp_path).get("hub/clients") == {"a": "b"}


def test_load_selects_vault_with_token(vault: FakeVault, tmp_path: Path) -> None:
    vault.mounts.add("kv")
    store = load_secret_store(
        {
            "QUARK_VAULT_ADDR": vault.url,
            "QUARK_VAULT_TOKEN": ROOT_TOKEN,
            "QUARK_VAULT_MOUNT": "kv",
            "QUARK_VAULT_PREFIX": "station-a",
        },
        tmp_path,
    )
    assert isinstance(store, VaultSecrets)
    store.put("auth/jwt-keys", {"kid": "v"})
    assert ("kv", "station-a/auth/jwt-keys") in vault.kv
    assert list(tmp_path.iterdir()) == []  # nothing went to the file store


def test_load_selects_vault_with_approle(vault: FakeVault) -> None:
    store = load_secret_store(
        {"QUARK_VAULT_ADDR": vault.url, "QUARK_VAULT_ROLE_ID": ROLE_ID, "QUARK_VAULT_SECRET_ID": SECRET_ID}
    )
    assert isinstance(store, VaultSecrets)
    store.put("hub/clients", {"c": "d"})
    assert store.get("hub/clients") == {"c": "d"}
    assert ("secret", "quark/hub/clients") in vault.kv
    assert vault.logins == 1


def test_load_vault_without_credentials_fails_clearly() -> None:
    with pytest.raises(SecretStoreError, match="no credentials"):
        load_secret_store({"QUARK_VAULT_ADDR": "http://127.0.0.1:8200"})
