"""Fixtures for the cross-service security suite (real PostgreSQL, Valkey and NATS via the `quark` fixture)."""

from __future__ import annotations

import sys
from pathlib import Path

# security_testkit (helpers) lives beside the tests.
sys.path.insert(0, str(Path(__file__).parent))
