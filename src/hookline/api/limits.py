"""Bounded types for request fields and query parameters, shared by every router.

An unbounded ``int`` or ``datetime`` from a request reaches the database as is, where it
fails (PostgreSQL refuses an int beyond its column's width, SQLite one beyond 64 bits, and a
date at the edge of the calendar overflows when moved to UTC): these types stop such values
at the edge, with a 422 (or a clamp, for instants), whatever the backend.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Annotated

from annotated_types import Ge, Le
from fastapi import Query
from pydantic import AfterValidator

INT32_MAX = 2**31 - 1
INT64_MAX = 2**63 - 1

# A 32-bit integer: the width of PostgreSQL INTEGER columns (integration ids, counters) and
# plenty for orders, counts and flags stored in JSON.
Int32 = Annotated[int, Ge(-INT32_MAX - 1), Le(INT32_MAX)]
Int64 = Annotated[int, Ge(-INT64_MAX - 1), Le(INT64_MAX)]

# Query parameters of paged reads. ``page * size`` and ``offset`` stay far inside 64 bits.
PageQuery = Annotated[int, Query(ge=1, le=INT32_MAX)]
OffsetQuery = Annotated[int, Query(ge=0, le=INT32_MAX)]

_UTC_MIN = datetime.min.replace(tzinfo=UTC)
_UTC_MAX = datetime.max.replace(tzinfo=UTC)


def to_utc_clamped(moment: datetime) -> datetime:
    """The instant in UTC (naive means UTC). One at the calendar's edge whose UTC form falls
    outside years 1..9999 (``9999-12-31T23:59:59-14:00``) is clamped to the first or last
    representable instant: every stored time lies between them, so filters mean the same."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        offset = moment.utcoffset()
        return _UTC_MAX if offset is not None and offset.total_seconds() < 0 else _UTC_MIN


# An instant from a request, normalised to UTC and clamped to the representable range.
UtcDatetime = Annotated[datetime, AfterValidator(to_utc_clamped)]

# A calendar day used as a filter ("on", "from", "to"): reads add a day to it, so the last
# day of the calendar cannot be one.
FilterDate = Annotated[date, Le(date(9999, 12, 30))]
