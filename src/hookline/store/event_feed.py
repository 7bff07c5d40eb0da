"""Reading an account's newest events in commit-safe order, for live event streams.

An event's ``created_at`` is taken before its transaction commits, so a slow transaction
can commit an event older than one already read. A reader therefore looks back a short
``lag`` before its cursor on every pass and skips the ids it already handed out: a
window scan on the ``(account_id, created_at)`` index, paged by ``(created_at, id)``.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import and_, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from hookline.store.tables import events

PAGE = 200


@dataclass(frozen=True)
class FeedEvent:
    id: uuid.UUID
    event: str
    consumer_id: uuid.UUID | None
    created_at: datetime
    payload: bytes


@dataclass
class FeedCursor:
    """Where one reader stands: the newest time read and the ids read since ``time - lag``."""

    time: datetime
    lag: timedelta = timedelta(seconds=2)
    seen: dict[uuid.UUID, datetime] = field(default_factory=dict)

    def note(self, event: FeedEvent) -> bool:
        """Record ``event`` as read; False when it was read before."""
        if event.id in self.seen:
            return False
        self.seen[event.id] = event.created_at
        self.time = max(self.time, event.created_at)
        return True

    def prune(self) -> None:
        horizon = self.time - self.lag
        for event_id in [i for i, t in self.seen.items() if t < horizon]:
            del self.seen[event_id]


async def read_new_events(
    conn: AsyncConnection, account_id: uuid.UUID, cursor: FeedCursor, *, limit: int = 1000
) -> list[FeedEvent]:
    """The account's events committed since ``cursor`` (oldest first, at most ``limit``),
    noted in the cursor."""
    start: tuple[datetime, uuid.UUID | None] = (cursor.time - cursor.lag, None)
    found: list[FeedEvent] = []
    while len(found) < limit:
        after = events.c.created_at >= start[0]
        if start[1] is not None:
            after = or_(
                events.c.created_at > start[0],
                and_(events.c.created_at == start[0], events.c.id > start[1]),
            )
        rows = (
            await conn.execute(
                select(
                    events.c.id,
                    events.c.event_type,
                    events.c.consumer_id,
                    events.c.created_at,
                    events.c.payload,
                )
                .where(events.c.account_id == account_id, after)
                .order_by(events.c.created_at, events.c.id)
                .limit(PAGE)
            )
        ).all()
        for row in rows:
            event = FeedEvent(row[0], row[1], row[2], row[3], bytes(row[4]))
            if cursor.note(event):
                found.append(event)
        if len(rows) < PAGE:
            break
        start = (rows[-1][3], rows[-1][0])
    cursor.prune()
    return found


async def event_time(
    conn: AsyncConnection, account_id: uuid.UUID, event_id: uuid.UUID
) -> datetime | None:
    """When one of the account's events was created (a stream resuming after it)."""
    return (
        await conn.execute(
            select(events.c.created_at).where(
                events.c.account_id == account_id, events.c.id == event_id
            )
        )
    ).scalar_one_or_none()
