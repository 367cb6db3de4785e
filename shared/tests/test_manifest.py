"""The manifest schema: versions, the seeds' example form mapped with warnings, errors that name the field; and
the schema compatibility check the hub runs at docking (quark_sdk.contracts)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Literal

import pytest
from pydantic import BaseModel, ConfigDict

from quark_sdk.cli import installed_modules
from quark_sdk.contracts import consumer_schema, incompatibilities, publisher_schema
from quark_sdk.manifest import MANIFEST_VERSION
from quark_sdk.registry import Manifest

# The example of the seeds (003, "module-manifest.yaml в каждый сервис"), verbatim.
SEED_EXAMPLE = """\
# services/auth-service/module-manifest.yaml
name: auth-service
version: 1.0.0
type: docker
requires:
  - database: postgres
  - event_bus: nats
exposes:
  - api: /auth/*
  - events: user.created
health_check: /health
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "module-manifest.yaml"
    path.write_text(text)
    return path


def test_the_seeds_example_manifest_is_accepted_with_warnings(tmp_path: Path,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="quark.registry"):
        mf = Manifest.load(write(tmp_path, SEED_EXAMPLE))
    assert mf.name == "auth-service" and mf.version == "1.0.0" and mf.type == "service"
    assert mf.manifest_version == MANIFEST_VERSION
    assert (mf.requires.database, mf.requires.event_bus, mf.requires.cache, mf.requires.storage) == \
        (True, True, False, False)
    assert mf.exposes.api == ["/auth"] and mf.exposes.events == ["quark.user.created"]
    assert mf.health_check == "/health" and mf.port is None
    said = "\n".join(mf.warnings)
    assert "type: 'docker' ignored" in said
    assert "'/auth/*' read as the route prefix '/auth'" in said
    assert "'user.created' read as the event type 'quark.user.created'" in said
    assert "port: none given" in said
    assert all(w in caplog.text for w in mf.warnings)  # logged, once per file and warning


def test_seed_form_ignores_what_quark_does_not_provide(tmp_path: Path) -> None:
    mf = Manifest.load(write(tmp_path, "name: stats\nversion: 0.1.0\ntype: docker\nrequires:\n"
                                       "  - database: mysql\n  - secrets: vault\n  - cache\nport: 3150\n"))
    assert mf.requires.database and mf.requires.cache and not mf.requires.event_bus
    said = "\n".join(mf.warnings)
    assert "requires.0: database: 'mysql' ignored: Quark's database is postgres" in said
    assert "requires.1: 'secrets' ignored" in said
    assert mf.port == 3150


def test_every_module_of_the_repo_is_on_the_current_version_without_warnings() -> None:
    for module in installed_modules():
        mf = module.manifest()
        assert mf.manifest_version == MANIFEST_VERSION, module.name
        assert mf.warnings == [], module.name


def test_a_version_1_manifest_still_reads(tmp_path: Path) -> None:
    mf = Manifest.load(write(tmp_path, "name: old\nversion: 1.0.0\nrequires: {database: true}\nport: 3200\n"))
    assert mf.manifest_version == 1 and mf.warnings == [] and mf.requires.database


@pytest.mark.parametrize(("text", "named"), [
    ("manifest_version: 9\nname: x1\nversion: 1.0.0\n", "manifest_version: 9 is newer than this SDK"),
    ("manifest_version: two\nname: x1\nversion: 1.0.0\n", "manifest_version: must be an integer"),
    ("manifest_version: 2\nname: X\nversion: 1.0.0\n", "name: must be 2-32 chars"),
    ("manifest_version: 2\nname: ok\nversion: one\n", "version: String should match pattern"),
    ("manifest_version: 2\nname: ok\nversion: 1.0.0\nport: 99999\n", "port: Input should be less than"),
    ("manifest_version: 2\nname: ok\nversion: 1.0.0\nexposes: {api: [auth]}\n",
     "exposes.api: route prefix 'auth' must start with /"),
    ("manifest_version: 2\nname: ok\nversion: 1.0.0\nrequires: {database: yes, gpu: true}\n",
     "requires.gpu: Extra inputs are not permitted"),
    ("manifest_version: 2\nname: ok\nversion: 1.0.0\nconsumes: [quark.a.b]\npayloads: {quark.c.d: m:Model}\n",
     "payloads.quark.c.d: not an event this module publishes"),
    ("manifest_version: 2\nname: ok\nversion: 1.0.0\nconsumes: [quark.a.b]\npayloads: {quark.a.b: Model}\n",
     "payloads.quark.a.b: 'Model' must be an import path"),
    ("name: ok\nversion: 1.0.0\ntype: docker\nexposes: [api]\n", "exposes.0: must be an `api: <prefix>`"),
])
def test_validation_errors_name_the_field(tmp_path: Path, text: str, named: str) -> None:
    with pytest.raises(ValueError, match="invalid manifest") as err:
        Manifest.load(write(tmp_path, text))
    assert named in str(err.value)


def test_every_error_is_reported_not_only_the_first(tmp_path: Path) -> None:
    with pytest.raises(ValueError) as err:
        Manifest.load(write(tmp_path, "manifest_version: 2\nname: X\nversion: one\nport: 0\n"))
    message = str(err.value)
    assert "name:" in message and "version:" in message and "port:" in message


# --------------------------------------------------------------------------- schema compatibility


class Author(BaseModel):
    id: str
    name: str


class Sent(BaseModel):
    post_id: str
    count: int
    ratio: float
    author: Author
    tags: list[str]
    state: Literal["draft", "published"]
    note: str | None = None


def problems(consumer: type[BaseModel]) -> list[str]:
    return [str(p) for p in incompatibilities(publisher_schema(Sent), consumer_schema(consumer))]


def test_a_tolerant_reader_is_compatible() -> None:
    class Reader(BaseModel):
        post_id: str
        ratio: float
        count: float  # an integer is a number
        author: Author
        state: str
        note: str | None = None
        extra: int = 0  # has a default: absent is fine

    assert problems(Reader) == []


def test_incompatibilities_name_the_field() -> None:
    class Missing(BaseModel):
        post_id: str
        score: float

    class Retyped(BaseModel):
        count: str
        tags: list[int]

    class Nested(BaseModel):
        author: dict[str, int]

    class NotNull(BaseModel):
        note: str

    class Narrow(BaseModel):
        state: Literal["published"]

    class Strict(BaseModel):
        model_config = ConfigDict(extra="forbid")
        post_id: str

    assert problems(Missing) == ["data.score: required by the consumer, not sent by the publisher"]
    assert problems(Retyped) == [
        "data.count: type changed: the publisher sends integer, the consumer expects string",
        "data.tags[]: type changed: the publisher sends string, the consumer expects integer"]
    assert problems(Nested) == ["data.author.id: type changed: the publisher sends string, the consumer "
                                "expects integer", "data.author.name: type changed: the publisher sends string, "
                                "the consumer expects integer"]
    assert problems(NotNull) == ["data.note: type changed: the publisher sends null, the consumer expects string"]
    assert problems(Narrow) == ["data.state: the publisher may send 'draft', which the consumer does not accept "
                                "(it accepts [\"'published'\"])"]
    assert any(p.startswith("data.count: sent by the publisher, forbidden by the consumer") for p in problems(Strict))
