"""Quark AI orchestrator."""
