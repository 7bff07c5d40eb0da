"""The outbox's SQL: one event row, plus a delivery and a queue row per matching webhook.

This runs for every emitted event, so it is written at driver level (no statement
compilation or per-row type processing) and in as few round trips as each driver allows:

- **SQLite** (aiosqlite): every statement through SQLAlchemy costs three or four hand-offs
  to aiosqlite's thread (cursor, execute, fetch, close) while the write lock is held; here
  the four statements run in ONE hand-off, inside the caller's transaction.
- **PostgreSQL**: the matching webhooks are read first, then the event, its deliveries and
  queue rows are inserted by one statement (data-modifying CTEs; foreign keys are checked at
  the end of the statement, so the event row is visible to them).

Which webhooks receive an event is decided by ONE condition per dialect,
:func:`webhook_match_sql` (account, event type, status, POS integration, payload filter),
used by every fan-out statement here and in ``event_pg.py`` (``event_batch.py`` calls
:func:`write_sqlite_rows`).

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
    "id, account_id, event_type, consumer_id, integration_id, payload, idempotency_key, created_at"
)
_DELIVERY_COLUMNS = "id, event_id, webhook_id, account_id, status, attempts, created_at, updated_at"
_QUEUE_COLUMNS = "delivery_id, webhook_id, event_id, available_at, attempt"


def sqlite_time(value: datetime) -> str:
    """How the UTCDateTime column stores a moment on SQLite (naive UTC, microseconds)."""
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")


# The payload filter (a webhook's ``payload_filter``: body field -> accepted values, scalars
# only) as SQL, so that fan-out stays one statement. The CASE keeps webhooks without a filter
# from paying anything: the body is parsed only for a webhook that has one.
_FILTER_SQL = {
    "postgresql": (
        "(CASE WHEN webhooks.payload_filter IS NULL THEN true ELSE NOT EXISTS ("
        "SELECT 1 FROM jsonb_each(webhooks.payload_filter) AS f WHERE NOT f.value @> "
        "jsonb_build_array(convert_from({payload}, 'UTF8')::jsonb -> f.key)) END)"
    ),
    "sqlite": (
        "(CASE WHEN webhooks.payload_filter IS NULL THEN 1 ELSE NOT EXISTS ("
        "SELECT 1 FROM json_each(webhooks.payload_filter) AS f WHERE NOT EXISTS ("
        "SELECT 1 FROM json_each(f.value) AS a "
        "WHERE a.type = json_type(CAST({payload} AS TEXT), '$.\"' || f.key || '\"') "
        "AND a.atom IS json_extract(CAST({payload} AS TEXT), '$.\"' || f.key || '\"'))) END)"
    ),
}


# The event row the connection inserted last (its rowid), evaluated only for a webhook with a
# filter.
_LAST_EVENT_BODY = "(SELECT events.payload FROM events WHERE events.rowid = last_insert_rowid())"


def webhook_match_sql(
    dialect: str, *, account: str, event: str, payload: str, pos: bool, integration: str | None
) -> str:
    """THE condition a ``webhooks`` row meets to receive an event, for every fan-out statement
    of ``dialect`` (``postgresql`` or ``sqlite``): the account's active webhooks of the event
    (POS: only its integration's) whose payload filter accepts the body. The other arguments
    are the SQL expressions (parameter marks) of the account id, event type, body bytes and,
    for a POS event of a named integration, the integration id."""
    sql = (
        f"webhooks.account_id = {account} AND webhooks.event = {event} "
        "AND webhooks.status = 'active'"
    )
    if pos:
        sql += (
            " AND webhooks.integration_id IS NULL"
            if integration is None
            else f" AND webhooks.integration_id = {integration}"
        )
    return sql + " AND " + _FILTER_SQL[dialect].format(payload=payload)


def _webhooks_sql(dialect: str, pos: bool, integration_id: int | None, mark: str) -> str:
    """The matching webhooks; parameters: account, event[, integration id], then (PostgreSQL
    only) the body. SQLite reads the body from the event row just inserted instead: binding
    it would cost every event, filtered webhooks or not."""
    marks = [mark.format(i) for i in (1, 2, 3, 4)]
    named = pos and integration_id is not None
    condition = webhook_match_sql(
        dialect,
        account=marks[0],
        event=marks[1],
        payload=_LAST_EVENT_BODY if dialect == "sqlite" else marks[3 if named else 2],
        pos=pos,
        integration=marks[2] if named else None,
    )
    return "SELECT id FROM webhooks WHERE " + condition


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
    )
    return await sqlite_call(conn, "INSERT INTO events", write_sqlite_rows, row, pos)


def write_sqlite_rows(
    db: sqlite3.Connection, event_row: tuple[Any, ...], pos: bool
) -> tuple[uuid.UUID, ...]:
    """The event row (in column order, driver values), its deliveries and queue rows, on a
    plain sqlite3 connection inside the caller's transaction; returns the delivery ids."""
    event_hex, account, event, _, integration_id, _, _, stamp = event_row
    db.execute(f"INSERT INTO events ({_EVENT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", event_row)
    params: tuple[Any, ...] = (account, event)
    if pos and integration_id is not None:
        params += (integration_id,)
    sql = _webhooks_sql("sqlite", pos, integration_id, "?{0}")
    hooks = [row[0] for row in db.execute(sql, params).fetchall()]
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
) -> tuple[uuid.UUID, ...]:
    select_params: tuple[Any, ...] = (account_id, event)
    if pos and integration_id is not None:
        select_params += (integration_id,)
    select_params += (payload,)
    sql = _webhooks_sql("postgresql", pos, integration_id, "${0}")
    hooks = [row[0] for row in (await conn.exec_driver_sql(sql, select_params)).all()]
    event_params = (
        event_id,
        account_id,
        event,
        consumer_id,
        integration_id,
        payload,
        idempotency_key,
        now,
    )
    if not hooks:
        await conn.exec_driver_sql(
            f"INSERT INTO events ({_EVENT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            event_params,
        )
        return ()
    ids = tuple(new_id() for _ in hooks)
    await conn.exec_driver_sql(_FAN_OUT_POSTGRESQL, (*event_params, list(ids), hooks))
    return ids


_FAN_OUT_POSTGRESQL = (
    f"WITH e AS (INSERT INTO events ({_EVENT_COLUMNS}) "
    "VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id), "
    "t AS (SELECT * FROM unnest($9::uuid[], $10::uuid[]) AS t(delivery_id, webhook_id)), "
    f"d AS (INSERT INTO deliveries ({_DELIVERY_COLUMNS}) "
    "SELECT t.delivery_id, e.id, t.webhook_id, $2, 'pending', 0, $8, $8 FROM t, e "
    "RETURNING id) "
    f"INSERT INTO delivery_queue ({_QUEUE_COLUMNS}) "
    "SELECT t.delivery_id, t.webhook_id, $1, $8, 0 FROM t, d WHERE d.id = t.delivery_id"
)
