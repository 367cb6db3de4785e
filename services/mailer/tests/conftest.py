"""Fixtures for the mailer's tests: a running mailer on real PostgreSQL and NATS, sending to a real SMTP
server (the dev sink of quark_sdk.devmail, or an aiosmtpd server that answers what a test tells it)."""

import sys
from pathlib import Path

# mailer_testkit (helpers) lives beside the tests.
sys.path.insert(0, str(Path(__file__).parent))
