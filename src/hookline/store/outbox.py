"""The outbox's SQL: one event row, plus a delivery and a queue row per matching webhook.

This runs for every emitted event, so it is written at driver level (no statement
compilation or per-row type processing) and in as few round trips as each driver allows:

- **SQLite** (aiosqlite): every statement through SQLAlchemy costs three or four hand-offs
  to aiosqlite's thread (cursor, execute, fetch, close) while the write lock is held; here
  the four statements run in ONE hand-off, inside the caller's transaction.
- **PostgreSQL**: one statement for any number of events (their columns as arrays): it
  matches the webhooks, inserts the events (``ON CONFLICT`` on the idempotency key: a key
  that exists inserts nothing), their deliveries and queue rows (data-modifying CTEs;
  foreign keys are checked at the end of the statement, so the event rows are visible to
  them). The general path, the group commit of ``POST /events`` and ``POST /events/batch``
  all run it.

Every path matches webhooks with the one condition of its dialect (``_WEBHOOK_MATCH``:
account, event type, status, POS integration, payload filter).

Values are converted exactly as the column types would (UUID: 32 hex chars on SQLite; naive
UTC text), so rows are indistinguishable from ORM-written ones.
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from hookline.ids import new_id, new_ids_for_driver
from hookline.store.db import sqlite_call

_EVENT_COLUMNS = (
    "id, account_id, event_type, consumer_id, integration_id, payload, idempotency_key, "
    "created_at, traceparent"
)
_DELIVERY_COLUMNS = "id, event_id, webhook_id, account_id, status, attempts, created_at, updated_at"
_QUEUE_COLUMNS = "delivery_id, webhook_id, event_id, available_at, attempt, ordering_key"


@dataclass(frozen=True, slots=True)
class EventRow:
    """One event to store and fan out, as the hot paths hand it to the store."""

    event_id: uuid.UUID
    account_id: uuid.UUID
    event: str
    consumer_id: uuid.UUID | None
    integration_id: int | None
    payload: bytes
    idempotency_key: str | None
    now: datetime
    pos: bool
    traceparent: str | None = None  # hookline.tracing: the write's span, when tracing is on


@dataclass(frozen=True, slots=True)
class ExistingEvent:
    """The event an idempotency key already produced (nothing was written this time)."""

    id: uuid.UUID
    payload: bytes
    integration_id: int | None
    deliveries: int


@dataclass(frozen=True, slots=True)
class Written:
    delivery_ids: tuple[uuid.UUID, ...] = ()
    existing: ExistingEvent | None = None


def sqlite_time(value: datetime) -> str:
    """How the UTCDateTime column stores a moment on SQLite (naive UTC, microseconds)."""
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")


# The webhook-matching condition of EVERY fan-out (one event or many, any path), one per
# dialect: a new condition on which webhooks get an event is added here and nowhere else.
# ``{h}`` is the webhooks row; the event side is given as SQL expressions (columns of the
# statement's event rows, or parameters): ``account`` and ``event`` (its type), ``pos``
# (a POS event is scoped to one integration), ``integration`` and ``payload`` (its bytes).
_WEBHOOK_MATCH = {
    # The payload filter (``payload_filter``: body field -> accepted values, scalars only)
    # sits behind a CASE, so webhooks without a filter never parse the body.
    "postgresql": (
        "{h}.account_id = {account} AND {h}.event = {event} AND {h}.status = 'active' "
        "AND (NOT {pos} OR {h}.integration_id IS NOT DISTINCT FROM {integration}) "
        "AND (CASE WHEN {h}.payload_filter IS NULL THEN true ELSE NOT EXISTS ("
        "SELECT 1 FROM jsonb_each({h}.payload_filter) AS f WHERE NOT f.value @> "
        "jsonb_build_array(convert_from({payload}, 'UTF8')::jsonb -> f.key)) END)"
    ),
    "sqlite": (
        "{h}.account_id = {account} AND {h}.event = {event} AND {h}.status = 'active' "
        "AND (NOT {pos} OR {h}.integration_id IS {integration}) "
        "AND (CASE WHEN {h}.payload_filter IS NULL THEN 1 ELSE NOT EXISTS ("
        "SELECT 1 FROM json_each({h}.payload_filter) AS f WHERE NOT EXISTS ("
        "SELECT 1 FROM json_each(f.value) AS a "
        "WHERE a.type = json_type(CAST({payload} AS TEXT), '$.\"' || f.key || '\"') "
        "AND a.atom IS json_extract(CAST({payload} AS TEXT), '$.\"' || f.key || '\"'))) END)"
    ),
}


def webhook_match(
    dialect: str, *, h: str, account: str, event: str, pos: str, integration: str, payload: str
) -> str:
    """The shared condition (see ``_WEBHOOK_MATCH``) with its placeholders filled in."""
    return _WEBHOOK_MATCH[dialect].format(
        h=h, account=account, event=event, pos=pos, integration=integration, payload=payload
    )


# SQLite looks the webhooks up per event, right after inserting it, with named parameters.
# A filter reads the body from that event row (its rowid) rather than from a parameter:
# binding the body would cost every event, filtered webhooks or not.
_SQLITE_WEBHOOKS = "SELECT h.id, h.ordering FROM webhooks h WHERE " + webhook_match(
    "sqlite",
    h="h",
    account=":account",
    event=":event",
    pos=":pos",
    integration=":integration",
    payload="(SELECT events.payload FROM events WHERE events.rowid = last_insert_rowid())",
)


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
    event_hex, account, event, consumer, integration_id, _, _, stamp, _ = event_row
    db.execute(f"INSERT INTO events ({_EVENT_COLUMNS}) VALUES ({', '.join('?' * 9)})", event_row)
    params = {"account": account, "event": event, "pos": int(pos), "integration": integration_id}
    hooks = db.execute(_SQLITE_WEBHOOKS, params).fetchall()  # (id, ordering)
    if not hooks:
        return ()
    ids = tuple(new_id() for _ in hooks)
    pairs = [(i.hex, hook, ordering) for i, (hook, ordering) in zip(ids, hooks, strict=True)]
    db.executemany(
        f"INSERT INTO deliveries ({_DELIVERY_COLUMNS}) VALUES (?, ?, ?, ?, 'pending', 0, ?, ?)",
        [(i, event_hex, hook, account, stamp, stamp) for i, hook, _ in pairs],
    )
    # An ordered webhook's row carries the event's consumer as its ordering key.
    db.executemany(
        f"INSERT INTO delivery_queue ({_QUEUE_COLUMNS}) VALUES (?, ?, ?, ?, 0, ?)",
        [(i, hook, event_hex, stamp, ordering and consumer) for i, hook, ordering in pairs],
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
    async def fetch(sql: str, *args: Any) -> Any:
        return (await conn.exec_driver_sql(sql, args)).one()

    row = EventRow(
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
    (written,) = await fan_out_postgresql(fetch, [row])
    if written is None:  # a concurrent request committed this idempotency key first
        raise IntegrityError("INSERT INTO events", None, Exception("idempotency key exists"))
    return written


# PostgreSQL: any number of events (their columns as arrays, in the order given), their
# deliveries and queue rows in ONE statement. Delivery ids are UUIDv7 made in Python, so the
# statement carries spare ids ($10); when the events match more webhooks than that, it
# writes nothing and answers how many it needs (the caller runs it again with that many).
_FAN_OUT_POSTGRESQL = (
    "WITH i AS (SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::uuid[], "
    "$5::int[], $6::bytea[], $7::text[], $8::timestamptz[], $9::bool[], $11::text[]) "
    "WITH ORDINALITY AS i(id, account_id, event_type, consumer_id, integration_id, payload, "
    "idempotency_key, created_at, pos, traceparent, n)), "
    "m AS (SELECT i.n, h.id AS webhook_id, h.ordering, "
    "row_number() OVER (ORDER BY i.n, h.id) AS k "
    "FROM i JOIN webhooks h ON "
    + webhook_match(
        "postgresql",
        h="h",
        account="i.account_id",
        event="i.event_type",
        pos="i.pos",
        integration="i.integration_id",
        payload="i.payload",
    )
    + "), "
    "enough AS (SELECT count(*) AS needed, count(*) <= cardinality($10::uuid[]) AS ok FROM m), "
    f"e AS (INSERT INTO events ({_EVENT_COLUMNS}) SELECT i.id, i.account_id, i.event_type, "
    "i.consumer_id, i.integration_id, i.payload, i.idempotency_key, i.created_at, "
    "i.traceparent FROM i "
    "WHERE (SELECT ok FROM enough) ORDER BY i.n "
    "ON CONFLICT (account_id, idempotency_key) DO NOTHING RETURNING id), "
    # Both inserts read r (the queue row's ordering key is the event's consumer when the
    # webhook orders its deliveries); the queue's foreign key is checked at the end.
    "r AS (SELECT ($10::uuid[])[m.k] AS id, i.id AS event_id, m.webhook_id, i.account_id, "
    "i.created_at, CASE WHEN m.ordering IS NOT NULL THEN i.consumer_id END AS ordering_key "
    "FROM m JOIN i ON i.n = m.n JOIN e ON e.id = i.id), "
    f"d AS (INSERT INTO deliveries ({_DELIVERY_COLUMNS}) SELECT id, event_id, webhook_id, "
    "account_id, 'pending', 0, created_at, created_at FROM r), "
    f"q AS (INSERT INTO delivery_queue ({_QUEUE_COLUMNS}) SELECT id, webhook_id, event_id, "
    "created_at, 0, ordering_key FROM r RETURNING delivery_id, event_id) "
    "SELECT (SELECT needed FROM enough), (SELECT ok FROM enough), array(SELECT id FROM e), "
    "array(SELECT delivery_id FROM q ORDER BY delivery_id), "
    "array(SELECT event_id FROM q ORDER BY delivery_id)"
)
FAN_OUT_STATEMENTS = (_FAN_OUT_POSTGRESQL,)

Fetch = Callable[..., Awaitable[Any]]


async def fan_out_postgresql(
    fetch: Fetch, rows: Sequence[EventRow], spare_ids: int = 0
) -> list[tuple[uuid.UUID, ...] | None]:
    """Insert ``rows`` (distinct idempotency keys per account) and fan them out in one
    statement, run by ``fetch(sql, *args)`` (one row back), on the caller's connection.

    Answers, per row, its delivery ids, or ``None`` when the row was not inserted because
    its idempotency key already exists. ``spare_ids``: how many delivery ids to carry on the
    first try (default: two per event).
    """
    columns: tuple[list[Any], ...] = ([], [], [], [], [], [], [], [], [], [])
    for row in rows:
        for column, value in zip(columns, _pg_values(row), strict=True):
            column.append(value)
    count = spare_ids or 2 * len(rows) + 2
    while True:
        record = await fetch(
            _FAN_OUT_POSTGRESQL, *columns[:9], new_ids_for_driver(count), columns[9]
        )
        needed, ok, inserted, delivery_ids, delivery_events = record
        if ok:
            break
        count = needed
    by_event: dict[uuid.UUID, list[uuid.UUID]] = {}
    for delivery_id, event_id in zip(delivery_ids, delivery_events, strict=True):
        by_event.setdefault(_uuid(event_id), []).append(_uuid(delivery_id))
    written = {_uuid(i) for i in inserted}
    return [
        tuple(by_event.get(row.event_id, ())) if row.event_id in written else None for row in rows
    ]


def _pg_values(row: EventRow) -> tuple[Any, ...]:
    return (
        row.event_id,
        row.account_id,
        row.event,
        row.consumer_id,
        row.integration_id,
        row.payload,
        row.idempotency_key,
        row.now,
        row.pos,
        row.traceparent,
    )


def _uuid(value: Any) -> uuid.UUID:
    """asyncpg's own UUID type as ``uuid.UUID``."""
    return value if type(value) is uuid.UUID else uuid.UUID(bytes=value.bytes)
