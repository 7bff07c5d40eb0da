"""Pluggable POS connectors that hookline polls for orders and locations.

A connector implements :class:`PosConnector`; :func:`register_connector` binds it to an
integration id; :func:`poll_connection` asks the connection's connector for what changed and
upserts it in one transaction (so the events of a poll are committed with its rows).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol, runtime_checkable

from sqlalchemy import select

from hookline.periodic import Ticked, every
from hookline.platform import orders
from hookline.platform.pos_schema import POSLocationItem, PushedOrder
from hookline.platform.statuses import ConnectionStatus
from hookline.runtime import Runtime
from hookline.store.tables import connections

log = logging.getLogger(__name__)


@runtime_checkable
class PosConnector(Protocol):
    """What a POS connector provides. ``since`` is the end of the previous poll (None first)."""

    async def fetch_locations(self, connection_id: uuid.UUID) -> list[POSLocationItem]: ...

    async def fetch_orders(
        self, connection_id: uuid.UUID, *, since: datetime | None, now: datetime
    ) -> list[PushedOrder]: ...


_REGISTRY: dict[int, PosConnector] = {}


def register_connector(integration_id: int, connector: PosConnector) -> None:
    """Use ``connector`` for every connection on ``integration_id`` (replaces any other)."""
    if not isinstance(connector, PosConnector):
        raise TypeError(f"{connector!r} does not implement PosConnector")
    _REGISTRY[integration_id] = connector


def unregister_connector(integration_id: int) -> None:
    _REGISTRY.pop(integration_id, None)


def connector_for(integration_id: int) -> PosConnector | None:
    return _REGISTRY.get(integration_id)


@dataclass(frozen=True)
class PollResult:
    connection_id: uuid.UUID
    orders_seen: int
    updated: int
    completed: int


async def poll_connection(
    runtime: Runtime, connection_id: uuid.UUID, *, since: datetime | None = None
) -> PollResult:
    """One poll of one POS connection through the connector registered for its integration."""
    async with runtime.db.read() as conn:
        connection = await orders.pos_connection_by_id(conn, connection_id)
    connector = connector_for(connection.integration_id)
    if connector is None:
        raise LookupError(f"No connector registered for integration {connection.integration_id}")
    return await poll_with(runtime, connector, connection_id, since=since)


async def poll_with(
    runtime: Runtime,
    connector: PosConnector,
    connection_id: uuid.UUID,
    *,
    since: datetime | None = None,
) -> PollResult:
    """One poll of one POS connection through ``connector`` (no registry involved)."""
    async with runtime.db.read() as conn:
        connection = await orders.pos_connection_by_id(conn, connection_id)
    now = runtime.clock.now()
    locations = await connector.fetch_locations(connection_id)
    fetched = await connector.fetch_orders(connection_id, since=since, now=now)
    async with runtime.db.transaction() as conn:
        await orders.upsert_locations(conn, connection, locations, now=now)
        results = await orders.upsert_orders(conn, connection, fetched, now=now)
    return PollResult(
        connection_id,
        len(fetched),
        sum(r.changed for r in results),
        sum(r.completed for r in results),
    )


async def run_pos_pollers(runtime: Runtime, stop: asyncio.Event, *, ticked: Ticked = None) -> None:
    """Poll every POS connection whose integration has a registered connector, every
    ``scheduler_interval_seconds``. Nothing is registered by default, so this idles unless a
    deployment registers connectors. Several processes may poll the same connection: upserts
    are idempotent, and a rare duplicate insert only fails that poll, which the next repeats.
    """
    last: dict[uuid.UUID, datetime] = {}

    async def tick() -> None:
        if not _REGISTRY:
            return
        async with runtime.db.read() as conn:
            rows = (
                await conn.execute(
                    select(connections.c.id).where(
                        connections.c.integration_id.in_(list(_REGISTRY)),
                        connections.c.status == ConnectionStatus.ACTIVE,
                    )
                )
            ).all()
        for row in rows:
            started = runtime.clock.now()
            try:
                await poll_connection(runtime, row.id, since=last.get(row.id))
                last[row.id] = started
            except Exception:
                log.exception("polling POS connection %s failed", row.id)

    await every(
        max(runtime.settings.scheduler_interval_seconds, 0.05),
        stop,
        tick,
        what="POS polling",
        ticked=ticked,
    )
