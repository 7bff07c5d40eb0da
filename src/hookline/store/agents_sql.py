"""The local-agent watchdog's SQL that differs by backend: marking silent agents down.

On PostgreSQL racing watchdogs skip the rows another one has locked (no waiting, no
deadlock), and the UPDATE re-checks ``agent_status = 'up'`` on the row version it changes,
so a row already marked down by a committed competitor is left alone. SQLite serialises
writers, so the plain statement is already exclusive.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Row, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from hookline.store.tables import connections


async def mark_silent_agents_down(
    conn: AsyncConnection,
    *,
    up: str,
    down: str,
    cutoff: datetime,
    now: datetime,
    limit: int,
    account_id: uuid.UUID | None = None,
) -> Sequence[Row[Any]]:
    """Set ``down`` on up to ``limit`` agents still ``up`` and last seen before ``cutoff``
    (only ``account_id``'s when given); returns each changed row's id, consumer, account and
    integration."""
    scope = [] if account_id is None else [connections.c.account_id == account_id]
    stale = (
        select(connections.c.id)
        .where(connections.c.agent_status == up, connections.c.agent_last_seen < cutoff, *scope)
        .order_by(connections.c.agent_last_seen)
        .limit(limit)
    )
    if conn.dialect.name == "postgresql":
        stale = stale.with_for_update(skip_locked=True)  # racing watchdogs split the rows
    result = await conn.execute(
        update(connections)
        .where(
            connections.c.id.in_(stale.scalar_subquery()),
            connections.c.agent_status == up,
            connections.c.agent_last_seen < cutoff,
        )
        .values(agent_status=down, updated_at=now)
        .returning(
            connections.c.id,
            connections.c.consumer_id,
            connections.c.account_id,
            connections.c.integration_id,
        )
    )
    return result.all()
