"""The trace context stored with events (``events.traceparent``), read by a tracing worker."""

from __future__ import annotations

import uuid
from collections.abc import Collection

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from hookline.store.tables import events


async def event_traceparents(
    conn: AsyncConnection, event_ids: Collection[uuid.UUID]
) -> dict[uuid.UUID, str]:
    """``traceparent`` by event id, for those of ``event_ids`` that were written traced."""
    if not event_ids:
        return {}
    rows = await conn.execute(
        select(events.c.id, events.c.traceparent).where(
            events.c.id.in_(list(event_ids)), events.c.traceparent.is_not(None)
        )
    )
    return {row.id: row.traceparent for row in rows}
