"""Local agents: on-premise programs that keep a local-agent connection alive by heartbeat.

Two transitions, each in one function and each decided by a conditional UPDATE so that only
one transaction can win it, whatever the number of API and worker processes:

- :func:`agent_heartbeat`: first ping, or first ping after an outage -> ``account.connection.up``
- :func:`mark_down_stale_agents`: no ping for ``agent_down_after_seconds`` ->
  ``account.connection.down``, once per outage.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from hookline.delivery.emit import EventDraft, emit_draft
from hookline.error_codes import ErrorCode
from hookline.errors import Unauthorized
from hookline.periodic import Ticked, every
from hookline.platform import issues
from hookline.platform.statuses import AgentStatus
from hookline.runtime import Runtime
from hookline.security import fingerprint
from hookline.store.agents_sql import mark_silent_agents_down
from hookline.store.tables import connections

log = logging.getLogger(__name__)

WATCHDOG_BATCH = 500


@dataclass(frozen=True)
class Heartbeat:
    connection_id: uuid.UUID
    consumer_id: uuid.UUID
    account_id: uuid.UUID
    came_up: bool  # True when this ping ended an outage (or was the very first)
    last_seen: datetime


@dataclass(frozen=True)
class AgentDown:
    connection_id: uuid.UUID
    consumer_id: uuid.UUID
    account_id: uuid.UUID
    integration_id: int


async def agent_heartbeat(conn: AsyncConnection, token: str, *, now: datetime) -> Heartbeat:
    """Record a ping from the agent holding ``token``; 401 for an unknown token."""
    row = (
        await conn.execute(
            select(
                connections.c.id,
                connections.c.account_id,
                connections.c.consumer_id,
                connections.c.integration_id,
            ).where(connections.c.agent_token_hash == fingerprint(token))
        )
    ).first()
    if row is None:
        raise Unauthorized("Unknown agent token", error_code=ErrorCode.INVALID_AGENT_TOKEN)
    for _ in range(3):  # a watchdog may flip the status between our two statements
        came_up = await conn.execute(
            update(connections)
            .where(
                connections.c.id == row.id,
                or_(
                    connections.c.agent_status.is_(None),
                    connections.c.agent_status == AgentStatus.DOWN,
                ),
            )
            .values(agent_status=AgentStatus.UP, agent_last_seen=now, updated_at=now)
        )
        if came_up.rowcount == 1:
            await emit_draft(
                conn,
                EventDraft(
                    account_id=row.account_id,
                    event="account.connection.up",
                    consumer_id=row.consumer_id,
                    fields={"connectionid": row.id},
                    now=now,
                    integration_id=row.integration_id,
                ),
            )
            await issues.agent_status_changed(
                conn,
                account_id=row.account_id,
                consumer_id=row.consumer_id,
                connection_id=row.id,
                agent_status=AgentStatus.UP,
                now=now,
            )
            return Heartbeat(row.id, row.consumer_id, row.account_id, True, now)
        still_up = await conn.execute(
            update(connections)
            .where(connections.c.id == row.id, connections.c.agent_status == AgentStatus.UP)
            .values(agent_last_seen=now)
        )
        if still_up.rowcount == 1:
            return Heartbeat(row.id, row.consumer_id, row.account_id, False, now)
    raise Unauthorized("Unknown agent token", error_code=ErrorCode.INVALID_AGENT_TOKEN)


async def mark_down_stale_agents(
    conn: AsyncConnection,
    now: datetime,
    *,
    down_after_seconds: float,
    limit: int = WATCHDOG_BATCH,
    account_id: uuid.UUID | None = None,
) -> list[AgentDown]:
    """Mark agents silent for ``down_after_seconds`` as down and fire one ``down`` each
    (only ``account_id``'s when given: the demo's short threshold must not reach others).

    Racing watchdogs split the rows and re-check the status on the row they change
    (:func:`~hookline.store.agents_sql.mark_silent_agents_down`): each outage produces
    exactly one event.
    """
    rows = await mark_silent_agents_down(
        conn,
        up=AgentStatus.UP,
        down=AgentStatus.DOWN,
        cutoff=now - timedelta(seconds=down_after_seconds),
        now=now,
        limit=limit,
        account_id=account_id,
    )
    downs = [AgentDown(row.id, row.consumer_id, row.account_id, row.integration_id) for row in rows]
    for down in downs:
        await emit_draft(
            conn,
            EventDraft(
                account_id=down.account_id,
                event="account.connection.down",
                consumer_id=down.consumer_id,
                fields={"connectionid": down.connection_id},
                now=now,
                integration_id=down.integration_id,
            ),
        )
        await issues.agent_status_changed(
            conn,
            account_id=down.account_id,
            consumer_id=down.consumer_id,
            connection_id=down.connection_id,
            agent_status=AgentStatus.DOWN,
            now=now,
        )
    return downs


async def run_agent_watchdog(
    runtime: Runtime, stop: asyncio.Event, *, ticked: Ticked = None
) -> None:
    """Every ``scheduler_interval_seconds``, mark silent agents down (any number of
    processes may run this at once)."""

    async def tick() -> None:
        async with runtime.db.transaction() as conn:
            downs = await mark_down_stale_agents(
                conn,
                runtime.clock.now(),
                down_after_seconds=runtime.settings.agent_down_after_seconds,
            )
        if downs:
            log.info("agent watchdog: %d local agent(s) marked down", len(downs))

    await every(
        max(runtime.settings.scheduler_interval_seconds, 0.05),
        stop,
        tick,
        what="agent watchdog tick",
        ticked=ticked,
    )
