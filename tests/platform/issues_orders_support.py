"""Rows for the tests of issues and orders, written straight to the tables: a small world of
one account, consumers, connections and a sync, plus readers for the emitted events."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import insert, select

from hookline.bootstrap import prepare_database
from hookline.catalog import validate_body
from hookline.clock import FrozenClock
from hookline.ids import new_id
from hookline.platform.accounts import create_account
from hookline.runtime import Runtime
from hookline.store.tables import connections, consumers, events, syncs, webhooks

ACCOUNTING = 1001
POS_A = 2001
POS_B = 2002


@dataclass
class World:
    account_id: uuid.UUID
    consumer_id: uuid.UUID
    accounting: uuid.UUID  # connection on integration 1001
    pos: uuid.UUID  # connection on integration 2001
    sync_id: uuid.UUID
    flow_id: uuid.UUID


async def frozen_runtime(database: Any, **overrides: Any) -> tuple[Runtime, FrozenClock]:
    """A runtime on a frozen clock set to today's noon (UTC): the tests move it by minutes and
    days, and day-based reads ("created on") must not straddle a real midnight."""
    clock = FrozenClock(datetime.now(UTC).replace(hour=12, minute=0, second=0, microsecond=0))
    rt = Runtime.create(database.settings(**overrides), clock=clock)
    await prepare_database(rt)
    return rt, clock


async def add_consumer(rt: Runtime, account_id: uuid.UUID, name: str = "Bistro") -> uuid.UUID:
    consumer_id = new_id()
    async with rt.db.transaction() as conn:
        await conn.execute(
            insert(consumers).values(
                id=consumer_id, account_id=account_id, name=name, created_at=rt.clock.now()
            )
        )
    return consumer_id


async def add_connection(
    rt: Runtime,
    account_id: uuid.UUID,
    consumer_id: uuid.UUID,
    integration_id: int,
    *,
    status: str = "active",
) -> uuid.UUID:
    connection_id = new_id()
    now = rt.clock.now()
    async with rt.db.transaction() as conn:
        await conn.execute(
            insert(connections).values(
                id=connection_id,
                account_id=account_id,
                consumer_id=consumer_id,
                integration_id=integration_id,
                name=f"conn {integration_id}",
                status=status,
                created_at=now,
                updated_at=now,
            )
        )
    return connection_id


async def add_webhook(
    rt: Runtime, account_id: uuid.UUID, event: str, url: str, integration_id: int | None = None
) -> uuid.UUID:
    webhook_id = new_id()
    now = rt.clock.now()
    async with rt.db.transaction() as conn:
        await conn.execute(
            insert(webhooks).values(
                id=webhook_id,
                account_id=account_id,
                event=event,
                url=url,
                integration_id=integration_id,
                status="active",
                created_at=now,
                updated_at=now,
            )
        )
    return webhook_id


async def make_world(rt: Runtime) -> World:
    async with rt.db.transaction() as conn:
        key = await create_account(conn, "issues and orders", now=rt.clock.now())
    account_id = key.account_id
    consumer_id = await add_consumer(rt, account_id)
    accounting = await add_connection(rt, account_id, consumer_id, ACCOUNTING)
    pos = await add_connection(rt, account_id, consumer_id, POS_A)
    sync_id = new_id()
    async with rt.db.transaction() as conn:
        await conn.execute(
            insert(syncs).values(
                id=sync_id,
                account_id=account_id,
                name="invoices",
                definition={},
                created_at=rt.clock.now(),
            )
        )
    return World(account_id, consumer_id, accounting, pos, sync_id, new_id())


async def emitted(rt: Runtime, event: str | None = None) -> list[dict[str, Any]]:
    """Bodies of the stored events (oldest first), each checked against the catalog."""
    query = select(events.c.payload, events.c.event_type).order_by(events.c.created_at, events.c.id)
    if event:
        query = query.where(events.c.event_type == event)
    async with rt.db.read() as conn:
        rows = (await conn.execute(query)).all()
    bodies = [json.loads(row.payload) for row in rows]
    for body in bodies:
        validate_body(body)
    return bodies
