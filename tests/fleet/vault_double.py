"""A Vault HTTP test double: the subset of Vault's real HTTP API that deploy/vault/init_vault.py and
quark_sdk.secrets (both through hvac) call, served over HTTP on 127.0.0.1.

A test double because Vault is not a pip wheel and nothing is downloaded at run time; where the `vault` binary
exists, tests/fleet/test_init_scripts.py runs the init job against the real server. What it does like Vault
(`vault server -dev`): a KV v2 engine mounted at `secret/`, the root token, `sys/mounts`, `sys/auth`,
`sys/policy`, AppRole (roles, role-id, custom-secret-id, login issuing tokens), policies enforced on KV paths
(`path "…/*"` globs, capabilities), 403 `permission denied` otherwise, 404 `no handler for route` for anything
it does not know — so a client calling an endpoint the double lacks fails loudly instead of passing.
"""

from __future__ import annotations

import json
import re
import secrets
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

_POLICY = re.compile(r'path\s+"([^"]+)"\s*\{[^}]*capabilities\s*=\s*\[([^\]]*)\]', re.S)


class VaultError(Exception):
    def __init__(self, status: int, *errors: str) -> None:
        super().__init__(status, errors)
        self.status = status
        self.errors = list(errors)


@dataclass
class Role:
    policies: list[str]
    role_id: str
    secret_ids: set[str] = field(default_factory=set)


@dataclass
class Request:
    method: str
    path: str
    who: str  # "root", "approle:<role>", "anonymous"
    status: int


def parse_policy(hcl: str) -> list[tuple[str, set[str]]]:
    return [(path, set(re.findall(r'"([^"]+)"', caps))) for path, caps in _POLICY.findall(hcl)]


def _glob(pattern: str, path: str) -> bool:
    """Vault's policy paths: a trailing `*` is a prefix match, `+` one path segment."""
    regex = "".join("[^/]+" if part == "+" else re.escape(part) for part in re.split(r"(\+)", pattern.rstrip("*")))
    return re.fullmatch(regex + (".*" if pattern.endswith("*") else ""), path) is not None


class VaultDouble:
    """In-memory state of one dev-mode Vault; `start()` serves it and returns its address."""

    def __init__(self, root_token: str) -> None:
        self.root_token = root_token
        self.mounts: dict[str, dict[str, Any]] = {
            "secret/": {"type": "kv", "options": {"version": "2"}},
            "sys/": {"type": "system", "options": None},
            "cubbyhole/": {"type": "cubbyhole", "options": None},
        }
        self.auth: dict[str, dict[str, Any]] = {"token/": {"type": "token"}}
        self.policies: dict[str, str] = {}
        self.roles: dict[str, Role] = {}
        self.tokens: dict[str, tuple[str, list[str]]] = {}  # token -> (who, policies)
        self.kv: dict[str, list[dict[str, str]]] = {}  # "<mount>/<path>" -> versions
        self.requests: list[Request] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    # ------------------------------------------------------------------ serving

    def start(self) -> str:
        double = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length) if length else b""
                path = self.path.split("?", 1)[0]
                token = self.headers.get("x-vault-token", "")
                try:
                    body = json.loads(raw) if raw else {}
                    with double._lock:
                        who = double._who(token)
                        try:
                            status, payload = double.handle(self.command, path, body, token)
                        except VaultError as exc:
                            status, payload = exc.status, {"errors": exc.errors}
                        double.requests.append(Request(self.command, path, who, status))
                except ValueError:
                    status, payload = 400, {"errors": ["failed to parse JSON input"]}
                data = b"" if payload is None else json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_DELETE = do_LIST = _serve

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, name="vault-double", daemon=True).start()
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    # ------------------------------------------------------------------ the API

    def _who(self, token: str) -> str:
        if token and token == self.root_token:
            return "root"
        return self.tokens.get(token, ("anonymous", []))[0]

    def _require_root(self, token: str) -> None:
        if token != self.root_token:
            raise VaultError(403, "permission denied")

    def handle(self, method: str, path: str, body: dict[str, Any], token: str) -> tuple[int, Any]:
        if not path.startswith("/v1/"):
            raise VaultError(404)
        route = path.removeprefix("/v1/").rstrip("/")
        if route == "sys/init" and method == "GET":
            return 200, {"initialized": True}
        if route in ("sys/seal-status", "sys/health") and method == "GET":
            return 200, {"type": "shamir", "initialized": True, "sealed": False, "t": 1, "n": 1, "progress": 0,
                         "version": "1.18.3-test-double", "storage_type": "inmem"}
        if route == "auth/approle/login" and method in ("POST", "PUT"):
            return self._login(body)
        if route.startswith("sys/"):
            self._require_root(token)
            return self._sys(method, route.removeprefix("sys/"), body)
        if route.startswith("auth/approle/role/"):
            self._require_root(token)
            if "approle/" not in self.auth:
                raise VaultError(404, f"no handler for route \"{route}\". route entry not found.")
            return self._role(method, route.removeprefix("auth/approle/role/"), body)
        mount, sep, rest = route.partition("/data/")
        if sep and self.mounts.get(mount + "/", {}).get("options", {}) == {"version": "2"}:
            return self._kv(method, mount, rest, body, token)
        raise VaultError(404, f"no handler for route \"{route}\". route entry not found.")

    def _sys(self, method: str, route: str, body: dict[str, Any]) -> tuple[int, Any]:
        if route == "mounts" and method == "GET":
            return 200, {**self.mounts, "data": self.mounts}
        if route.startswith("mounts/") and method == "POST":
            name = route.removeprefix("mounts/") + "/"
            if name in self.mounts:
                raise VaultError(400, f"path is already in use at {name}")
            self.mounts[name] = {"type": body["type"], "options": body.get("options") or {}}
            return 204, None
        if route == "auth" and method == "GET":
            return 200, {**self.auth, "data": self.auth}
        if route.startswith("auth/") and method == "POST":
            name = route.removeprefix("auth/") + "/"
            if name in self.auth:
                raise VaultError(400, f"path is already in use at {name}")
            self.auth[name] = {"type": body["type"]}
            return 204, None
        if route.startswith("policy/") and method in ("PUT", "POST"):
            self.policies[route.removeprefix("policy/")] = str(body["policy"])
            return 204, None
        raise VaultError(404, f"no handler for route \"sys/{route}\". route entry not found.")

    def _role(self, method: str, route: str, body: dict[str, Any]) -> tuple[int, Any]:
        name, _, action = route.partition("/")
        if method not in ("POST", "PUT"):
            raise VaultError(405, "unsupported operation")
        if not action:
            created = self.roles.setdefault(name, Role(policies=[], role_id=secrets.token_hex(16)))
            wanted = body.get("token_policies") or body.get("policies") or []
            # Vault takes a list or a comma-separated string (what hvac sends).
            created.policies = [p.strip() for p in (wanted.split(",") if isinstance(wanted, str) else wanted)]
            return 204, None
        role = self.roles.get(name)
        if role is None:
            raise VaultError(400, f"role \"{name}\" does not exist")
        if action == "role-id":
            role.role_id = str(body["role_id"])
            return 204, None
        if action == "custom-secret-id":
            secret_id = str(body["secret_id"])
            if secret_id in role.secret_ids:
                raise VaultError(400, "SecretID is already registered")
            role.secret_ids.add(secret_id)
            return 200, {"data": {"secret_id": secret_id, "secret_id_accessor": secrets.token_hex(8),
                                  "secret_id_ttl": 0}}
        raise VaultError(404, f"no handler for route \"auth/approle/role/{route}\". route entry not found.")

    def _login(self, body: dict[str, Any]) -> tuple[int, Any]:
        role_id, secret_id = body.get("role_id"), body.get("secret_id")
        for name, role in self.roles.items():
            if role.role_id == role_id and secret_id in role.secret_ids:
                token = "hvs." + secrets.token_urlsafe(24)
                self.tokens[token] = (f"approle:{name}", role.policies)
                return 200, {"auth": {"client_token": token, "policies": ["default", *role.policies],
                                      "token_policies": ["default", *role.policies], "lease_duration": 3600,
                                      "renewable": True, "metadata": {"role_name": name}}}
        raise VaultError(400, "invalid role or secret ID")

    def _allowed(self, token: str, path: str, capability: str) -> bool:
        if token == self.root_token:
            return True
        _, policies = self.tokens.get(token, ("", []))
        return any(capability in caps and _glob(pattern, path)
                   for name in policies for pattern, caps in parse_policy(self.policies.get(name, "")))

    def _kv(self, method: str, mount: str, rest: str, body: dict[str, Any], token: str) -> tuple[int, Any]:
        if token != self.root_token and token not in self.tokens:
            raise VaultError(403, "permission denied")
        full = f"{mount}/data/{rest}"
        versions = self.kv.get(f"{mount}/{rest}")
        if method == "GET":
            if not self._allowed(token, full, "read"):
                raise VaultError(403, "permission denied")
            if not versions:
                raise VaultError(404)
            meta = {"version": len(versions), "deletion_time": "", "destroyed": False}
            return 200, {"data": {"data": versions[-1], "metadata": meta}}
        if method in ("POST", "PUT"):
            if not self._allowed(token, full, "update" if versions else "create"):
                raise VaultError(403, "permission denied")
            data = body.get("data")
            if not isinstance(data, dict):
                raise VaultError(400, "no data provided")
            self.kv.setdefault(f"{mount}/{rest}", []).append(dict(data))
            return 200, {"data": {"version": len(self.kv[f"{mount}/{rest}"]), "destroyed": False}}
        raise VaultError(405, "unsupported operation")

    # ------------------------------------------------------------------ for assertions

    def secret(self, path: str, mount: str = "secret") -> dict[str, str] | None:
        with self._lock:
            versions = self.kv.get(f"{mount}/{path}")
            return dict(versions[-1]) if versions else None
