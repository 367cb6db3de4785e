"""Replay for a newly docked module: what history its consumers get when they are first created.

The manifest says `replay: none | all | since <ISO 8601 time>` (default none). It matters only when a
durable consumer does not exist yet (the module's first docking): JetStream then starts it at the events
published from the module's start on (none; by start time rather than "new only", so an event published
while the consumer is still being created, or the one that creates its stream, is not lost), at the start of
the stream (all: whatever the stream still keeps, `STREAM_MAX_AGE`), or at the first event published at or
after the given time (since). A consumer that exists keeps its position whatever the
manifest says now, so restarts and upgrades never replay twice. Replayed events go through the same inbox as
live ones, so each is applied once even when a replay overlaps what was already consumed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

ReplayMode = Literal["none", "all", "since"]


@dataclass(frozen=True)
class ReplayPolicy:
    mode: ReplayMode = "none"
    since: datetime | None = None

    def __str__(self) -> str:
        return f"since {self.since.isoformat()}" if self.mode == "since" and self.since else self.mode


def parse_replay(value: str) -> ReplayPolicy:
    """`none`, `all` or `since <ISO time>` (a time without a zone is UTC); ValueError says what is wrong."""
    text = " ".join(str(value).split()).lower() if value is not None else "none"
    if text in ("none", "all"):
        return ReplayPolicy(text)  # type: ignore[arg-type]
    if text.startswith("since "):
        raw = str(value).split(None, 1)[1].strip()
        try:
            when = datetime.fromisoformat(raw.replace("Z", "+00:00").replace("z", "+00:00"))
        except ValueError:
            raise ValueError(f"replay: {raw!r} is not an ISO 8601 time (e.g. since 2026-01-31T00:00:00Z)") from None
        return ReplayPolicy("since", when if when.tzinfo else when.replace(tzinfo=UTC))
    raise ValueError("replay must be none, all or 'since <ISO 8601 time>'")
