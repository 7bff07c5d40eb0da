"""The outbox's SQL: one event row, plus a delivery and a queue row per matching webhook.

This runs for every emitted event, so it is written at driver level (no statement
compilation or per-row type processing) and in as few round trips as each driver allows:

- **SQLite** (aiosqlite): every statement through SQLAlchemy costs three or four hand-offs
  to aiosqlite's thread (cursor, execute, fetch, close) while the write lock is held; here
  the four statements run in ONE hand-off, inside the caller's transaction.
- **PostgreSQL**: the matching webhooks are read first, then the event, its deliveries and
  queue rows are inserted by one statement (data-modifying CTEs; foreign keys are checked at
  the end of the statement, so the event row is visible to them).

Values are converted exactly as the column types would (UUID: 32 hex chars on SQLite; naive
UTC text), so rows are indistinguishable from ORM-written ones.
"""

from __future__ import annotations

import sqlite3
import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from hookline.ids import new_id
from hookline.store.db import sqlite_call

_EVENT_COLUMNS = (
    "id, account_id, event_type, consumer_id, integration_id, payload, idempotency_key, "
    "created_at, traceparent"
)
_DELIVERY_COLUMNS = "id, event_id, webhook_id, account_id, status, attempts, created_at, updated_at"
_QUEUE_COLUMNS = "delivery_id, webhook_id, event_id, available_at, attempt"


def sqlite_time(value: datetime) -> str:
    """How the UTCDateTime column stores a moment on SQLite (naive UTC, microseconds)."""
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")


def _webhooks_sql(pos: bool, integration_id: int | None, mark: str) -> str:
    """The active webhooks of an account for an event (POS: only its integration's)."""
    sql = "SELECT id FROM webhooks WHERE account_id = {0} AND event = {1} AND status = 'active'"
    if pos:
        sql += (
            " AND integration_id IS NULL" if integration_id is None else " AND integration_id = {2}"
        )
    return sql.format(*(mark.format(i) for i in (1, 2, 3)))


async def write_event(
    conn: AsyncConnection,
    *,
    event_id: uuid.UUID,
    account_id: uuid.UUID,
    event: str,
    consumer_id: uuid.UUID | None,
    integration_id: int | None,
    payload: bytes,
    idempotency_key: str | None,
    now: datetime,
    pos: bool,
    traceparent: str | None = None,
) -> tuple[uuid.UUID, ...]:
    """Insert the event and fan it out in ``conn``'s transaction; returns the delivery ids."""
    if conn.dialect.name == "sqlite":
        return await _write_sqlite(
            conn,
            event_id,
            account_id,
            event,
            consumer_id,
            integration_id,
            payload,
            idempotency_key,
            now,
            pos,
            traceparent,
        )
    return await _write_postgresql(
        conn,
        event_id,
        account_id,
        event,
        consumer_id,
        integration_id,
        payload,
        idempotency_key,
        now,
        pos,
        traceparent,
    )


async def _write_sqlite(
    conn: AsyncConnection,
    event_id: uuid.UUID,
    account_id: uuid.UUID,
    event: str,
    consumer_id: uuid.UUID | None,
    integration_id: int | None,
    payload: bytes,
    idempotency_key: str | None,
    now: datetime,
    pos: bool,
    traceparent: str | None,
) -> tuple[uuid.UUID, ...]:
    row = (
        event_id.hex,
        account_id.hex,
        event,
        consumer_id.hex if consumer_id else None,
        integration_id,
        payload,
        idempotency_key,
        sqlite_time(now),
        traceparent,
    )
    return await sqlite_call(conn, "INSERT INTO events", write_sqlite_rows, row, pos)


def write_sqlite_rows(
    db: sqlite3.Connection, event_row: tuple[Any, ...], pos: bool
) -> tuple[uuid.UUID, ...]:
    """The event row (in column order, driver values), its deliveries and queue rows, on a
    plain sqlite3 connection inside the caller's transaction; returns the delivery ids."""
    event_hex, account, event, _, integration_id, _, _, stamp, _ = event_row
    db.execute(f"INSERT INTO events ({_EVENT_COLUMNS}) VALUES ({', '.join('?' * 9)})", event_row)
    params: tuple[Any, ...] = (account, event)
    if pos and integration_id is not None:
        params += (integration_id,)
    hooks = [
        row[0] for row in db.execute(_webhooks_sql(pos, integration_id, "?"), params).fetchall()
    ]
    if not hooks:
        return ()
    ids = tuple(new_id() for _ in hooks)
    pairs = [(i.hex, hook) for i, hook in zip(ids, hooks, strict=True)]
    db.executemany(
        f"INSERT INTO deliveries ({_DELIVERY_COLUMNS}) VALUES (?, ?, ?, ?, 'pending', 0, ?, ?)",
        [(i, event_hex, hook, account, stamp, stamp) for i, hook in pairs],
    )
    db.executemany(
        f"INSERT INTO delivery_queue ({_QUEUE_COLUMNS}) VALUES (?, ?, ?, ?, 0)",
        [(i, hook, event_hex, stamp) for i, hook in pairs],
    )
    return ids


async def _write_postgresql(
    conn: AsyncConnection,
    event_id: uuid.UUID,
    account_id: uuid.UUID,
    event: str,
    consumer_id: uuid.UUID | None,
    integration_id: int | None,
    payload: bytes,
    idempotency_key: str | None,
    now: datetime,
    pos: bool,
    traceparent: str | None,
) -> tuple[uuid.UUID, ...]:
    select_params: tuple[Any, ...] = (account_id, event)
    if pos and integration_id is not None:
        select_params += (integration_id,)
    hooks = [
        row[0]
        for row in (
            await conn.exec_driver_sql(_webhooks_sql(pos, integration_id, "${0}"), select_params)
        ).all()
    ]
    event_params = (
        event_id,
        account_id,
        event,
        consumer_id,
        integration_id,
        payload,
        idempotency_key,
        now,
        traceparent,
    )
    if not hooks:
        await conn.exec_driver_sql(
            f"INSERT INTO events ({_EVENT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            event_params,
        )
        return ()
    ids = tuple(new_id() for _ in hooks)
    await conn.exec_driver_sql(_FAN_OUT_POSTGRESQL, (*event_params, list(ids), hooks))
    return ids


_FAN_OUT_POSTGRESQL = (
    f"WITH e AS (INSERT INTO events ({_EVENT_COLUMNS}) "
    "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id), "
    "t AS (SELECT * FROM unnest($10::uuid[], $11::uuid[]) AS t(delivery_id, webhook_id)), "
    f"d AS (INSERT INTO deliveries ({_DELIVERY_COLUMNS}) "
    "SELECT t.delivery_id, e.id, t.webhook_id, $2, 'pending', 0, $8, $8 FROM t, e "
    "RETURNING id) "
    f"INSERT INTO delivery_queue ({_QUEUE_COLUMNS}) "
    "SELECT t.delivery_id, t.webhook_id, $1, $8, 0 FROM t, d WHERE d.id = t.delivery_id"
)
