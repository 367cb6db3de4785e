import sys
from pathlib import Path

# fault_testkit (helpers) and the purpose-built chaos module live beside the tests.
HERE = str(Path(__file__).parent)
if HERE not in sys.path:
    sys.path.insert(0, HERE)
