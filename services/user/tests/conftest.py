import sys
from pathlib import Path

# The user service's test helpers live beside the tests (user_testkit.py).
sys.path.insert(0, str(Path(__file__).parent))
