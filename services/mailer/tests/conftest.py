"""Fixtures for the mailer's tests: a running mailer on real PostgreSQL and NATS, sending to a real SMTP
server (the dev sink of quark_sdk.devmail, or an aiosmtpd server that answers what a test tells it)."""


