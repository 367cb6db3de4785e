"""Event contracts checked at docking (quark_hub.contracts), against a real hub on real Redis/PostgreSQL/NATS:
a consumer whose payload model cannot read what the publisher declares is refused with a problem+json that
names the event and the field; with contract_check=warn it docks; GET /api/v1/hub/contracts shows every pair."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from hub_testkit import manifest, register, registration, start_hub
from pydantic import BaseModel

from quark_sdk.contracts import consumer_schema, publisher_schema
from quark_sdk.testing import QuarkTestEnv

REGISTER = "/api/v1/hub/modules/register"
EVENT = "quark.post.published"


class Published(BaseModel):
    """The publisher's payload (what blog sends)."""

    post_id: str
    author_id: str
    title: str
    tags: list[str]
    visibility: Literal["public", "followers"]


class ReadsIt(BaseModel):
    """A consumer that reads a subset, with defaults for what it may miss: compatible."""

    post_id: str
    tags: list[str] = []
    summary: str = ""


class NeedsScore(BaseModel):
    """A consumer that requires a field the publisher never sends."""

    post_id: str
    score: float


class WantsIntAuthor(BaseModel):
    """A consumer that expects another type for a field the publisher sends."""

    post_id: str
    author_id: int


def with_contract(mf: dict[str, Any], *, publishes: type[BaseModel] | None = None,
                  consumes: type[BaseModel] | None = None) -> dict[str, Any]:
    mf["contracts"] = {
        "publishes": {EVENT: publisher_schema(publishes)} if publishes else {},
        "consumes": {EVENT: consumer_schema(consumes)} if consumes else {},
    }
    return mf


def blog(model: type[BaseModel] = Published, version: str = "1.0.0") -> dict[str, Any]:
    return with_contract(manifest("blog", api=["/api/v1/posts"], events=[EVENT], version=version), publishes=model)


def consumer(name: str, model: type[BaseModel] | None) -> dict[str, Any]:
    return with_contract(manifest(name, api=[f"/api/v1/{name}"], events=[], consumes=[EVENT]), consumes=model)


async def test_incompatible_consumer_is_refused_naming_event_and_field(quark: QuarkTestEnv, tmp_path: Path) -> None:
    svc = await start_hub(quark, tmp_path)
    await register(svc, blog(), "http://127.0.0.1:3004")
    await register(svc, consumer("recs", ReadsIt), "http://127.0.0.1:3101")  # compatible: docks

    refused = await svc.client.post(REGISTER, json=registration(consumer("scores", NeedsScore),
                                                                "http://127.0.0.1:3102"))
    assert refused.status_code == 409, refused.text
    assert refused.headers["content-type"] == "application/problem+json"
    problem = refused.json()
    assert problem["type"].endswith("contract-incompatible")
    assert EVENT in problem["detail"] and "data.score" in problem["detail"]
    assert "not sent by the publisher" in problem["detail"]
    [error] = problem["errors"]
    assert error["event"] == EVENT and error["publisher"] == "blog" and error["consumer"] == "scores"
    assert error["field"] == f"{EVENT}: data.score"

    typed = await svc.client.post(REGISTER, json=registration(consumer("authors", WantsIntAuthor),
                                                              "http://127.0.0.1:3103"))
    assert typed.status_code == 409
    assert "data.author_id" in typed.json()["detail"] and "type changed" in typed.json()["detail"]
    assert "string" in typed.json()["detail"] and "integer" in typed.json()["detail"]

    names = {m["name"] for m in (await svc.client.get("/api/v1/hub/services")).json()["items"]}
    assert names == {"blog", "recs"}  # the refused ones never docked


async def test_a_publisher_that_would_break_a_docked_consumer_is_refused(quark: QuarkTestEnv,
                                                                         tmp_path: Path) -> None:
    svc = await start_hub(quark, tmp_path)

    class Slimmer(BaseModel):  # a new blog version that stops sending `tags` as a list
        post_id: str
        tags: str

    await register(svc, consumer("recs", ReadsIt), "http://127.0.0.1:3101")
    await register(svc, blog(), "http://127.0.0.1:3004")
    upgrade = await svc.client.post(REGISTER, json=registration(blog(Slimmer, "2.0.0"), "http://127.0.0.1:3014"))
    assert upgrade.status_code == 409
    assert upgrade.json()["errors"][0]["field"] == f"{EVENT}: data.tags"


async def test_warn_mode_docks_and_the_api_shows_every_pair(quark: QuarkTestEnv, tmp_path: Path) -> None:
    svc = await start_hub(quark, tmp_path, contract_check="warn")
    await register(svc, blog(), "http://127.0.0.1:3004")
    await register(svc, consumer("recs", ReadsIt), "http://127.0.0.1:3101")
    await register(svc, consumer("scores", NeedsScore), "http://127.0.0.1:3102")  # docked despite it
    await register(svc, consumer("generic", None), "http://127.0.0.1:3104")  # names no model: unchecked

    view = (await svc.client.get("/api/v1/hub/contracts")).json()
    assert view["mode"] == "warn"
    assert (view["compatible"], view["incompatible"], view["unchecked"]) == (1, 1, 1)
    by_consumer = {p["consumer"]: p for p in view["items"]}
    assert by_consumer["recs"]["status"] == "compatible" and by_consumer["recs"]["problems"] == []
    assert by_consumer["generic"]["status"] == "unchecked"
    bad = by_consumer["scores"]
    assert bad["status"] == "incompatible" and bad["event"] == EVENT and bad["publisher"] == "blog"
    assert bad["problems"] == [{"field": "data.score",
                                "problem": "required by the consumer, not sent by the publisher"}]


async def test_contracts_of_real_modules_pass_through_registration(quark: QuarkTestEnv, tmp_path: Path) -> None:
    """The SDK's own manifest (with_contracts) fits the register body: the hub docks itself with its contracts."""
    svc = await start_hub(quark, tmp_path, self_dock=True)
    from quark_sdk.testing import eventually

    async def hub_pairs() -> Any:
        items = (await svc.client.get("/api/v1/hub/services")).json()["items"]
        return next((m for m in items if m["name"] == "hub"), None)

    hub = await eventually(hub_pairs, what="the hub docked in its own registry")
    published = hub["manifest"]["contracts"]["publishes"]
    assert "quark.hub.module.docked" in published
    assert published["quark.hub.module.docked"]["properties"]["module"]["type"] == "string"


async def test_the_station_s_own_modules_dock_with_their_contracts(quark: QuarkTestEnv, tmp_path: Path) -> None:
    """Every installed module's real manifest, with the contracts the SDK sends, docks under enforce, and every
    pair of the station is compatible and checked (a payload change that breaks a consumer fails here)."""
    from quark_sdk.cli import installed_modules

    svc = await start_hub(quark, tmp_path, self_dock=True)
    modules = [m for m in installed_modules() if m.name != "hub"]
    for i, module in enumerate(modules):
        body = module.manifest().with_contracts().model_dump(mode="json")
        await register(svc, body, f"http://127.0.6.{i + 1}:{body['port']}")
    from quark_sdk.testing import eventually

    async def all_docked() -> Any:
        view = (await svc.client.get("/api/v1/hub/contracts")).json()
        return view if {p["publisher"] for p in view["items"]} >= {"blog", "auth", "user"} else None

    view = await eventually(all_docked, what="the station's modules docked")
    unchecked = [(p["publisher"], p["consumer"], p["event"]) for p in view["items"] if p.get("status") == "unchecked"]
    assert view["mode"] == "enforce" and view["incompatible"] == 0 and view["unchecked"] == 0, unchecked
    assert view["compatible"] >= 50
