"""An injectable time source: tests move time, production reads the wall clock."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta


class Clock:
    def now(self) -> datetime:
        return datetime.now(UTC)

    def timestamp(self) -> float:
        """Seconds since the epoch: ``now().timestamp()``, read without building a datetime
        (the worker reads it for every request it signs)."""
        return time.time()


class FrozenClock(Clock):
    """A clock that only moves when told to, for testing time rules without waiting."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime.now(UTC)

    def now(self) -> datetime:
        return self._now

    def timestamp(self) -> float:
        return self._now.timestamp()

    def advance(self, seconds: float) -> None:
        self._now += timedelta(seconds=seconds)

    def set(self, moment: datetime) -> None:
        self._now = moment


SYSTEM_CLOCK = Clock()
