"""No input makes the hub answer 5xx: random bodies, paths and forms, each a 4xx problem or a success."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import quote

from hub_testkit import manifest, registration, start_hub
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from quark_sdk.testing import QuarkTestEnv

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=12,
)
FIELDS = ["name", "version", "type", "requires", "exposes", "consumes", "scopes", "health_check", "port"]


async def test_random_registrations_tokens_and_paths_never_5xx(quark: QuarkTestEnv, tmp_path: Path) -> None:
    svc = await start_hub(quark, tmp_path, register_rate_limit=100_000, token_rate_limit=100_000,
                          token_failure_limit=10_000, monitor_interval=60)
    seen: list[int] = []

    async def check(resp: Any) -> None:
        seen.append(resp.status_code)
        assert resp.status_code < 500, (resp.request.method, resp.request.url, resp.text[:300])
        if resp.status_code >= 400:
            assert resp.headers["content-type"] == "application/problem+json"

    @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
    @given(field=st.sampled_from(FIELDS), value=JSON, url=st.text(max_size=60), body=JSON,
           raw_segment=st.text(min_size=1, max_size=30), form=st.dictionaries(st.text(max_size=15),
                                                                          st.text(max_size=30), max_size=5))
    def run(field: str, value: Any, url: str, body: Any, raw_segment: str, form: dict[str, str]) -> None:
        segment = quote(raw_segment, safe="")
        good = registration(manifest("fuzz", api=["/api/v1/fuzz"]), "http://127.0.0.1:9")
        spoiled = registration(manifest("fuzz", api=["/api/v1/fuzz"]), url)
        spoiled["manifest"][field] = value
        requests.append(("POST", "/api/v1/hub/modules/register", {"json": spoiled}))
        requests.append(("POST", "/api/v1/hub/modules/register", {"json": body}))
        requests.append(("POST", "/api/v1/hub/modules/register", {"json": {**good, "health_url": url}}))
        requests.append(("PUT", f"/api/v1/hub/modules/{segment}/instances/{segment}/heartbeat", {}))
        requests.append(("DELETE", f"/api/v1/hub/modules/fuzz/instances/{segment}", {}))
        requests.append(("GET", "/api/v1/hub/services", {"params": {"capability": raw_segment, "name": raw_segment}}))
        requests.append(("GET", f"/api/v1/hub/services/{segment}", {}))
        requests.append(("POST", "/api/v1/hub/token", {"data": form}))
        requests.append(("POST", "/api/v1/hub/token", {"data": {**form, "grant_type": "client_credentials",
                                                                 "client_id": raw_segment, "client_secret": url}}))

    requests: list[tuple[str, str, dict[str, Any]]] = []
    run()
    for method, path, kwargs in requests:
        await check(await svc.client.request(method, path, **kwargs))
    assert len(seen) == len(requests) > 100
