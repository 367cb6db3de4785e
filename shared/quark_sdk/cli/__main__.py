"""`python -m quark_sdk.cli`: the `quark` command (how the station starts its module processes)."""

import sys

from quark_sdk.cli.parser import main

sys.exit(main())
