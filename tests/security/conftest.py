"""Fixtures for the cross-service security suite (real PostgreSQL, Valkey and NATS via the `quark` fixture)."""

from __future__ import annotations


