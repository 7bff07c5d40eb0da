"""The dashboard's health and event queries read indexes, never a whole table.

Each statement runs exactly as the pages run it, with EXPLAIN put in front at the cursor, on a
database holding thousands of attempts over ten days (analyzed, so PostgreSQL's planner
chooses as it would in production).
"""

from __future__ import annotations

import random
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

from sqlalchemy import event, insert
from sqlalchemy.ext.asyncio import AsyncConnection

from hookline.delivery import event_log, health
from hookline.ids import new_id
from hookline.platform.accounts import create_account
from hookline.runtime import Runtime
from hookline.store.tables import deliveries, events, webhook_logs, webhooks

WEBHOOKS = 20
LOGS = 6000


@asynccontextmanager
async def explained(conn: AsyncConnection) -> AsyncIterator[None]:
    """Statements run on ``conn`` meanwhile answer their plan instead of their rows."""
    prefix = "EXPLAIN QUERY PLAN " if conn.dialect.name == "sqlite" else "EXPLAIN "

    def explain(_conn: Any, _cursor: Any, statement: str, params: Any, *_: Any) -> Any:
        return prefix + statement, params

    sync = conn.sync_connection
    assert sync is not None
    event.listen(sync, "before_cursor_execute", explain, retval=True)
    try:
        yield
    finally:
        event.remove(sync, "before_cursor_execute", explain)


async def plan_of(conn: AsyncConnection, statement: Any) -> str:
    async with explained(conn):
        result = await conn.execute(statement)
        rows = result.cursor.fetchall()  # raw rows: the statement's column types do not apply
    return "\n".join(str(row[-1]) for row in rows)


async def seed(runtime: Runtime) -> tuple[uuid.UUID, list[uuid.UUID], list[uuid.UUID]]:
    rng = random.Random(7)
    now = runtime.clock.now()
    async with runtime.db.transaction() as conn:
        account = (await create_account(conn, "plans", now=now)).account_id
        hooks = [new_id() for _ in range(WEBHOOKS)]
        await conn.execute(
            insert(webhooks),
            [
                {
                    "id": hook,
                    "account_id": account,
                    "event": "account.connection.up",
                    "url": f"https://h{n}.example/hook",
                    "status": "active",
                    "created_at": now,
                    "updated_at": now,
                }
                for n, hook in enumerate(hooks)
            ],
        )
        event_rows, delivery_rows, log_rows = [], [], []
        for n in range(LOGS):
            at = now - timedelta(minutes=rng.uniform(0, 10 * 24 * 60))
            event_id, delivery_id, hook = new_id(), new_id(), rng.choice(hooks)
            event_rows.append(
                {
                    "id": event_id,
                    "account_id": account,
                    "event_type": "account.connection.up",
                    "consumer_id": None,
                    "payload": b"{}",
                    "created_at": at,
                }
            )
            delivery_rows.append(
                {
                    "id": delivery_id,
                    "event_id": event_id,
                    "webhook_id": hook,
                    "account_id": account,
                    "status": "delivered" if n % 3 else "failed",
                    "attempts": 1,
                    "created_at": at,
                    "updated_at": at,
                }
            )
            log_rows.append(
                {
                    "id": new_id(),
                    "webhook_id": hook,
                    "delivery_id": delivery_id,
                    "event_id": event_id,
                    "account_id": account,
                    "event": "account.connection.up",
                    "url": "https://example.com",
                    "http_status": 200,
                    "attempt": 1,
                    "duration_ms": 1.0,
                    "outcome": "delivered" if n % 3 else "failed",
                    "created_at": at,
                }
            )
        await conn.execute(insert(events), event_rows)
        await conn.execute(insert(deliveries), delivery_rows)
        await conn.execute(insert(webhook_logs), log_rows)
        await conn.exec_driver_sql("ANALYZE")
    return account, hooks, [row["id"] for row in delivery_rows[:3]]


async def test_health_and_event_queries_use_their_indexes(runtime: Runtime) -> None:
    account, hooks, some_deliveries = await seed(runtime)
    now = runtime.clock.now()
    sqlite = runtime.db.is_sqlite
    async with runtime.db.read() as conn:
        counts = await plan_of(conn, health.counts_statement(hooks, now))
        last = await plan_of(conn, health.last_success_statement(hooks))
        window = await plan_of(
            conn, event_log.window_statement(account, now - timedelta(days=1), now, None, 500)
        )
        attempts = await plan_of(conn, event_log.attempts_statement(some_deliveries, account))
        # no time bounds, after a cursor: still a range of the index, read newest first
        anchor = (now - timedelta(days=2), uuid.UUID(int=0))
        unbounded = await plan_of(
            conn, event_log.window_statement(account, None, None, anchor, 500)
        )
    assert "ix_webhook_logs_webhook_created_outcome" in counts, counts
    assert "ix_deliveries_webhook_status" in last, last
    assert "ix_events_account_created" in window, window
    assert "ix_webhook_logs_delivery" in attempts, attempts
    if sqlite:
        assert "USING COVERING INDEX ix_webhook_logs_webhook_created_outcome" in counts, counts
    assert "ix_events_account_created" in unbounded, unbounded
    bounded = "created_at<?" if sqlite else "(created_at <= "
    assert bounded in unbounded.split("Filter")[0], unbounded  # the cursor bounds the range
    for plan in (counts, last, window, attempts, unbounded):
        for table in ("webhook_logs", "deliveries", "events"):
            assert f"Seq Scan on {table}" not in plan, plan
            assert f"SCAN {table}\n" not in plan + "\n", plan
