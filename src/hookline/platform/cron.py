"""Cron schedules of timer triggers: validation and the next due time (always UTC)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from croniter import croniter

from hookline.error_codes import ErrorCode
from hookline.errors import InvalidRequest

SEPARATOR = "|"  # never part of a cron expression; joins a flow's schedules in one column


def validate_schedules(schedules: Sequence[str]) -> list[str]:
    """Normalised schedules, or InvalidRequest naming the first bad expression."""
    cleaned = [" ".join(item.split()) for item in schedules]
    for expression in cleaned:
        if not expression or SEPARATOR in expression or not croniter.is_valid(expression):
            raise InvalidRequest(
                f"Invalid cron schedule: {expression!r}", error_code=ErrorCode.INVALID_CRON
            )
    return cleaned


def next_due(schedules: Sequence[str], after: datetime) -> datetime | None:
    """The earliest time strictly after ``after`` at which any schedule fires."""
    if not schedules:
        return None
    base = after.astimezone(UTC)
    return min(croniter(expression, base).get_next(datetime) for expression in schedules)


def fires_at(expression: str, moment: datetime) -> bool:
    """Whether ``expression`` fires at ``moment`` (to the minute, or the second for a
    six-field expression)."""
    return bool(croniter.match(expression, moment.astimezone(UTC)))


def join(schedules: Sequence[str]) -> str | None:
    return SEPARATOR.join(schedules) or None


def split(column: str | None) -> list[str]:
    return column.split(SEPARATOR) if column else []
