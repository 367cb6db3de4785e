"""Vault init job of the Quark fleet: policies, AppRoles and the secrets every module starts with.

Run by the `vault-init` service of docker-compose.yml (in the hub image, which has the SDK and hvac) with the
root token of the dev server; idempotent, so running it again changes nothing that exists.

For every module M (hub, auth, user, media, blog, messaging, ai, mailer, moderation):

* policy ``quark-M``: read/write ``secret/data/quark/M/*`` and nothing else — a module cannot read
  another module's secrets;
* AppRole ``quark-M`` with role_id ``quark-M`` and the secret_id from ``QUARK_M_VAULT_SECRET_ID``; the
  module logs in with ``QUARK_VAULT_ROLE_ID`` / ``QUARK_VAULT_SECRET_ID`` (quark_sdk.secrets.VaultSecrets);
* ``quark/M/client`` = {client_id, client_secret}: the module's own service-client credentials, generated here.

And once for the station (generated here, only when absent, in the SDK's own format):

* ``quark/hub/clients`` = {module: client_secret} — the hub provisions these clients at start;
* ``quark/hub/signing-keys`` and ``quark/auth/signing-keys`` = {"keyset": <SigningKeySet JSON>}
  (Ed25519); auth's keyset also carries the ``next`` key it publishes before rotating to it.

Nothing generated is printed. Environment: QUARK_VAULT_ADDR, VAULT_TOKEN (root/admin token),
QUARK_<M>_VAULT_SECRET_ID for each module, optionally QUARK_VAULT_MOUNT (secret) / QUARK_VAULT_PREFIX (quark).
"""

from __future__ import annotations

import json
import os
import secrets
import sys
import time
from collections.abc import Mapping
from typing import Any

MODULES = ("hub", "auth", "user", "media", "blog", "messaging", "ai", "mailer", "moderation")
TOKEN_TTL = "1h"  # noqa: S105 - a duration, not a secret
TOKEN_MAX_TTL = "24h"  # noqa: S105


def policy_name(module: str) -> str:
    return f"quark-{module}"


def policy_hcl(module: str, mount: str = "secret", prefix: str = "quark") -> str:
    """A module may manage its own secrets (KV v2 data + metadata) and nothing else."""
    base = f"{prefix}/{module}"
    return "\n".join([
        f'path "{mount}/data/{base}/*" {{',
        '  capabilities = ["create", "read", "update", "delete"]',
        "}",
        f'path "{mount}/metadata/{base}/*" {{',
        '  capabilities = ["read", "list", "delete"]',
        "}",
        "",
    ])


def secret_id_var(module: str) -> str:
    return f"QUARK_{module.upper()}_VAULT_SECRET_ID"


def generated_secrets(existing: Mapping[str, dict[str, str] | None]) -> dict[str, dict[str, str]]:
    """The secrets to write: only those not in `existing` (path -> current value or None)."""
    from quark_sdk.auth import SigningKey, SigningKeySet

    out: dict[str, dict[str, str]] = {}
    clients = dict(existing.get("hub/clients") or {})
    for module in MODULES:
        own = existing.get(f"{module}/client")
        if module == "hub":
            continue  # the hub is the identity provider; it needs no client of its own
        secret = (own or {}).get("client_secret") or clients.get(module) or secrets.token_urlsafe(32)
        if not own:
            out[f"{module}/client"] = {"client_id": module, "client_secret": secret}
        if clients.get(module) != secret:
            clients[module] = secret
            out["hub/clients"] = clients
    if not existing.get("hub/signing-keys"):
        out["hub/signing-keys"] = {"keyset": json.dumps(SigningKeySet.generate("EdDSA").to_dict())}
    if not existing.get("auth/signing-keys"):
        data = SigningKeySet.generate("EdDSA").to_dict()
        data["next"] = SigningKey.generate("EdDSA").to_dict()
        out["auth/signing-keys"] = {"keyset": json.dumps(data)}
    return out


def wait_for_vault(client: Any, timeout: float = 60.0) -> None:
    import requests

    deadline = time.monotonic() + timeout
    while True:
        try:
            if client.sys.is_initialized() and not client.sys.is_sealed():
                return
        except requests.exceptions.RequestException:
            pass
        if time.monotonic() > deadline:
            raise SystemExit(f"vault-init: Vault at {client.url} is not ready after {timeout:.0f}s")
        time.sleep(0.5)


def ensure_approle(client: Any, module: str, secret_id: str) -> None:
    import hvac.exceptions

    name = policy_name(module)
    client.sys.create_or_update_policy(name=name, policy=policy_hcl(module, *_mount_prefix()))
    client.auth.approle.create_or_update_approle(
        role_name=name, token_policies=[name], token_ttl=TOKEN_TTL, token_max_ttl=TOKEN_MAX_TTL,
        secret_id_ttl="0", token_type="service",  # noqa: S106 - settings, not secrets
    )
    client.auth.approle.update_role_id(role_name=name, role_id=name)
    try:
        client.auth.approle.create_custom_secret_id(role_name=name, secret_id=secret_id)
    except hvac.exceptions.InvalidRequest as exc:
        if "already registered" not in str(exc).lower():
            raise


def _mount_prefix() -> tuple[str, str]:
    return os.environ.get("QUARK_VAULT_MOUNT") or "secret", os.environ.get("QUARK_VAULT_PREFIX", "quark")


def main(environ: Mapping[str, str] = os.environ) -> int:
    import hvac

    from quark_sdk.secrets import VaultSecrets

    addr = environ.get("QUARK_VAULT_ADDR", "http://vault:8200")
    token = environ.get("VAULT_TOKEN", "")
    if not token:
        print("vault-init: VAULT_TOKEN is not set", file=sys.stderr)
        return 2
    missing = [secret_id_var(m) for m in MODULES if len(environ.get(secret_id_var(m), "")) < 16]
    if missing:
        print(f"vault-init: set these to 16+ characters: {', '.join(missing)}", file=sys.stderr)
        return 2

    client = hvac.Client(url=addr, token=token, timeout=10)
    wait_for_vault(client)
    mount, prefix = _mount_prefix()
    if f"{mount}/" not in client.sys.list_mounted_secrets_engines()["data"]:
        client.sys.enable_secrets_engine("kv", path=mount, options={"version": "2"})
    if "approle/" not in client.sys.list_auth_methods()["data"]:
        client.sys.enable_auth_method("approle")
    for module in MODULES:
        ensure_approle(client, module, environ[secret_id_var(module)])

    store = VaultSecrets(addr, token=token, mount=mount, prefix=prefix)
    paths = ["hub/clients", "hub/signing-keys", "auth/signing-keys", *(f"{m}/client" for m in MODULES)]
    existing = {path: store.get(path) for path in paths}
    written = generated_secrets(existing)
    for path, values in written.items():
        store.put(path, values)
    print(f"vault-init: {len(MODULES)} AppRoles ready; wrote {', '.join(sorted(written)) or 'nothing (all present)'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
