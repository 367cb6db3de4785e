import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

# fault_testkit (helpers) and the purpose-built chaos module live beside the tests.


@pytest.fixture
def scratch() -> Iterator[Path]:
    """A private directory for a test's dedicated servers (not pytest's shared, pruned basetemp)."""
    path = Path(tempfile.mkdtemp(prefix="quark-fault-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
