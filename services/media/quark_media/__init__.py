"""Quark media service: safe uploads, image processing, object storage."""
