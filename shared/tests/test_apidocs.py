"""`quark docs`: OpenAPI per module and an AsyncAPI 3.0 document built from the event catalogue."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from quark_sdk.cli import main

HERE = Path(__file__).parent


def test_docs_are_generated_from_code(tmp_path: Path) -> None:
    out = tmp_path / "api"
    assert main(["docs", "--out", str(out), "--modules", "", "--with", "sample.module:module"]) == 0
    openapi = json.loads((out / "sample.openapi.json").read_text())
    assert openapi["openapi"].startswith("3.")
    assert "/api/v1/sample/notes" in openapi["paths"]

    asyncapi = yaml.safe_load((out / "asyncapi.yaml").read_text())
    assert asyncapi["asyncapi"] == "3.0.0"
    channel = asyncapi["channels"]["quark_sample_noted"]
    assert channel["address"] == "quark.sample.noted"
    assert "Published by sample" in channel["description"]
    payload = asyncapi["components"]["schemas"]["quark_sample_noted"]
    assert payload["properties"]["text"]["type"] == "string"
    assert asyncapi["operations"]["sample_publishes_quark_sample_noted"]["action"] == "send"
    assert asyncapi["operations"]["sample_consumes_quark_sample_noted"]["action"] == "receive"
    # Every $ref resolves inside the document.
    text = (out / "asyncapi.yaml").read_text()
    for line in text.splitlines():
        if "$ref:" in line:
            ref = line.split("$ref:")[1].strip().strip("'\"")
            node = asyncapi
            for part in ref.removeprefix("#/").split("/"):
                node = node[part]
