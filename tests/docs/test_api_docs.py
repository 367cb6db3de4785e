"""The published API documents (docs/api/) are what the code serves: regenerate with `quark docs`."""

from __future__ import annotations

from pathlib import Path

from quark_sdk.apidocs import write_api_docs
from quark_sdk.cli import installed_modules

DOCS = Path(__file__).resolve().parents[2] / "docs" / "api"


def test_docs_api_matches_the_code(tmp_path: Path) -> None:
    written = write_api_docs(installed_modules(), tmp_path)
    assert written, "no module installed"
    stale = [p.name for p in written if not (DOCS / p.name).exists() or (DOCS / p.name).read_text() != p.read_text()]
    assert not stale, f"docs/api is out of date for {stale}: run `.venv/bin/quark docs` and commit the result"
    extra = sorted({p.name for p in DOCS.iterdir()} - {p.name for p in written})
    assert not extra, f"docs/api holds documents no installed module produces: {extra}"
