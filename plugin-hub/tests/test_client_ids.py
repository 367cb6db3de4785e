"""Client ids in admin paths are module names: anything else is a 422, never a 500 (found by tests/security)."""

from __future__ import annotations

from pathlib import Path

from hub_testkit import start_hub

from quark_sdk.testing import QuarkTestEnv

CLIENTS = "/api/v1/hub/clients"


async def test_bad_client_ids_in_paths_are_422(quark: QuarkTestEnv, tmp_path: Path) -> None:
    svc = await start_hub(quark, tmp_path)
    admin = quark.bearer(quark.user_token(roles=("admin",)))
    for bad in ("a%00b", "Bad-Name", "x" * 40, "-blog"):
        for method, path in (("DELETE", f"{CLIENTS}/{bad}"), ("POST", f"{CLIENTS}/{bad}/secret")):
            resp = await svc.client.request(method, path, headers=admin)
            assert resp.status_code == 422, (method, path, resp.text)
            assert resp.headers["content-type"].startswith("application/problem+json")
    # A well-formed id that names no client is still a 404.
    assert (await svc.client.delete(f"{CLIENTS}/nobody", headers=admin)).status_code == 404
    assert (await svc.client.post(f"{CLIENTS}/nobody/secret", headers=admin)).status_code == 404
