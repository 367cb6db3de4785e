import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

# fault_testkit (helpers) and the purpose-built chaos module live beside the tests.
HERE = str(Path(__file__).parent)
if HERE not in sys.path:
    sys.path.insert(0, HERE)


@pytest.fixture
def scratch() -> Iterator[Path]:
    """A private directory for a test's dedicated servers (not pytest's shared, pruned basetemp)."""
    path = Path(tempfile.mkdtemp(prefix="quark-fault-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
