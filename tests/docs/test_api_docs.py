"""The published API documents (docs/api/) are what the code serves: regenerate with `quark docs`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parents[2] / "docs" / "api"


def test_docs_api_matches_the_code(tmp_path: Path) -> None:
    # In a fresh process: this test session's own sample modules register events of their own.
    done = subprocess.run([str(Path(sys.executable).with_name("quark")), "docs", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    written = sorted(tmp_path.iterdir())
    assert written, "no module installed"
    stale = [p.name for p in written if not (DOCS / p.name).exists() or (DOCS / p.name).read_text() != p.read_text()]
    assert not stale, f"docs/api is out of date for {stale}: run `.venv/bin/quark docs` and commit the result"
    extra = sorted({p.name for p in DOCS.iterdir()} - {p.name for p in written})
    assert not extra, f"docs/api holds documents no installed module produces: {extra}"
