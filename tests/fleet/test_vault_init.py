"""deploy/vault/init_vault.py: each module's policy confines it to its own secrets, the generated secrets are in
the SDK's formats, and a second run changes nothing."""

from __future__ import annotations

import json
import re

import pytest
from fleetkit import ALL_MODULES, load_init_vault

init_vault = load_init_vault()


def test_covers_every_module() -> None:
    assert tuple(init_vault.MODULES) == ALL_MODULES


@pytest.mark.parametrize("module", ALL_MODULES)
def test_policy_confines_a_module_to_its_own_path(module: str) -> None:
    hcl = init_vault.policy_hcl(module)
    paths = re.findall(r'path "([^"]+)"', hcl)
    assert paths == [f"secret/data/quark/{module}/*", f"secret/metadata/quark/{module}/*"]
    assert "sudo" not in hcl and "root" not in hcl


def test_generated_secrets_use_the_sdk_formats() -> None:
    from quark_sdk.auth import SigningKey, SigningKeySet

    out = init_vault.generated_secrets({})
    clients = out["hub/clients"]
    assert set(clients) == set(ALL_MODULES) - {"hub"}
    for module, secret in clients.items():
        assert len(secret) >= 32
        assert out[f"{module}/client"] == {"client_id": module, "client_secret": secret}
    assert len(set(clients.values())) == len(clients)
    hub_keys = SigningKeySet.from_dict(json.loads(out["hub/signing-keys"]["keyset"]))
    assert hub_keys.active.algorithm == "EdDSA"
    auth = json.loads(out["auth/signing-keys"]["keyset"])
    assert SigningKeySet.from_dict(auth).active.kid != SigningKey.from_dict(auth["next"]).kid
    for values in out.values():
        assert all(isinstance(v, str) for v in values.values())  # the SecretStore contract: flat string maps


def test_second_run_writes_nothing_and_keeps_secrets() -> None:
    first = init_vault.generated_secrets({})
    existing = {path: first.get(path) for path in
                ["hub/clients", "hub/signing-keys", "auth/signing-keys", *(f"{m}/client" for m in ALL_MODULES)]}
    assert init_vault.generated_secrets(existing) == {}
    # A client secret lost from hub/clients is restored from the module's own copy, not regenerated.
    damaged = dict(existing, **{"hub/clients": {k: v for k, v in first["hub/clients"].items() if k != "blog"}})
    again = init_vault.generated_secrets(damaged)
    assert set(again) == {"hub/clients"}
    assert again["hub/clients"]["blog"] == first["blog/client"]["client_secret"]


def test_refuses_to_run_without_credentials(capsys: pytest.CaptureFixture[str]) -> None:
    assert init_vault.main({"QUARK_VAULT_ADDR": "http://127.0.0.1:1"}) == 2
    assert "VAULT_TOKEN" in capsys.readouterr().err
    assert init_vault.main({"VAULT_TOKEN": "x", "QUARK_HUB_VAULT_SECRET_ID": "short"}) == 2
    assert "QUARK_HUB_VAULT_SECRET_ID" in capsys.readouterr().err
