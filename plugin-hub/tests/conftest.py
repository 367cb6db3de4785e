import sys
from pathlib import Path

HERE = Path(__file__).parent
# hub_testkit (helpers) and fleet_modules/echo live beside the tests; the SDK's sample module
# (docked in the fleet and browser tests) lives beside the SDK's tests.
for path in (HERE, HERE / "fleet_modules", HERE.parents[1] / "shared" / "tests"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))
