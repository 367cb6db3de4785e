"""Small input helpers shared by the service modules (cursors and pages: quark_sdk.pagination)."""

from __future__ import annotations

import uuid


def parse_uuid(value: str) -> uuid.UUID | None:
    """A path id that is not a UUID names nothing: callers answer 404, as for an unknown id."""
    try:
        return uuid.UUID(value)
    except ValueError:
        return None
