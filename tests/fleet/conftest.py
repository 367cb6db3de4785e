import sys
from pathlib import Path

# fleetkit (helpers shared by the fleet packaging tests) lives beside the tests.
sys.path.insert(0, str(Path(__file__).parent))
