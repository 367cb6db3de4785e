from pathlib import Path

HERE = Path(__file__).parent
# hub_testkit (helpers) and fleet_modules/echo live beside the tests; the SDK's sample module
# (docked in the fleet and browser tests) lives beside the SDK's tests.
