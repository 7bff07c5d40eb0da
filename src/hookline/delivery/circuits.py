"""A webhook's circuit as its owner sees it: the state of the circuit of its destination.

The circuit belongs to the destination (scheme + host + port), not to the webhook: every
webhook whose URL points at that destination shows the same state (the API answers it only
to the webhook's own account, and it reveals nothing but the state of the account's own URL).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from sqlalchemy.ext.asyncio import AsyncConnection

from hookline.delivery.sender import host_key
from hookline.store.destinations import circuits_for


class CircuitState(StrEnum):
    CLOSED = "closed"  # requests go out
    OPEN = "open"  # nothing is sent until ``retry_at``; deliveries wait in the queue
    HALF_OPEN = "half_open"  # the cool-down is over: one probe decides


@dataclass(frozen=True, slots=True)
class CircuitView:
    state: CircuitState
    failures: int = 0  # consecutive failures that opened it
    opened_at: datetime | None = None
    retry_at: datetime | None = None  # when a probe may go out


CLOSED = CircuitView(CircuitState.CLOSED)


async def circuits_of_urls(
    conn: AsyncConnection, urls: Sequence[str], now: datetime
) -> dict[str, CircuitView]:
    """The circuit of each URL's destination (closed when the database knows no other)."""
    keys = {url: host_key(url) for url in urls}
    rows = await circuits_for(conn, list(set(keys.values())))
    views: dict[str, CircuitView] = {}
    for url, key in keys.items():
        row = rows.get(key)
        if row is None:
            views[url] = CLOSED
            continue
        state = CircuitState.OPEN if row.open_until > now else CircuitState.HALF_OPEN
        views[url] = CircuitView(state, row.failures, row.opened_at, row.open_until)
    return views
