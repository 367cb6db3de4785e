import sys
from pathlib import Path

# The sample module the SDK tests dock lives beside the tests.
sys.path.insert(0, str(Path(__file__).parent))
