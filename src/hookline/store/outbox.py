"""The outbox's SQL: event rows, plus a delivery and a queue row per matching webhook.

This runs for every event, so it is written at driver level (no statement compilation or
per-row type processing), set-based, in as few round trips as each driver allows. The event
sink (:mod:`hookline.store.event_sink`) decides transactions and idempotency; this module
only writes.

- **SQLite** (stdlib ``sqlite3`` connection, inside the caller's transaction): the events
  of a call in multi-row inserts (a hundred rows a statement, the rest in one
  ``executemany``), their matching webhooks in ONE join over the new rows, then deliveries
  and queue rows the same way: a few statements for a group or a batch of any size,
  instead of four per event.
- **PostgreSQL**: one statement for any number of events (their columns as arrays): it
  matches the webhooks, inserts the events (``ON CONFLICT`` on the idempotency key: a key
  that exists inserts nothing), their deliveries and queue rows (data-modifying CTEs;
  foreign keys are checked at the end of the statement, so the event rows are visible to
  them). ``emit`` in a transaction, the group commit of ``POST /events`` and
  ``POST /events/batch`` all run it.

Every path matches webhooks with the one condition of its dialect (``_WEBHOOK_MATCH``:
account, event type, status, POS integration, payload filter).

Values are converted exactly as the column types would (UUID: 32 hex chars on SQLite; naive
UTC text), so rows are indistinguishable from ORM-written ones.
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from hookline.ids import new_id_text, new_ids_for_driver, uuid_from_hex
from hookline.store.event_sink import EventRow

_EVENT_COLUMNS = (
    "id, account_id, event_type, consumer_id, integration_id, payload, idempotency_key, "
    "created_at, traceparent"
)
_DELIVERY_COLUMNS = "id, event_id, webhook_id, account_id, status, attempts, created_at, updated_at"
_QUEUE_COLUMNS = "delivery_id, webhook_id, event_id, available_at, attempt, ordering_key"


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


# SQLite matches the webhooks of every event a call inserted at once: the new rows are the
# rowid range (after, last] (the caller holds the write lock), read in rowid order. A POS
# event is one whose type is in :pos, the POS types of the call between commas (",a,b,"; a
# type name has no comma): cheaper than a JSON array. A filter reads the body from the row.
_SQLITE_MATCHES = (
    "SELECT e.rowid, h.id, h.ordering FROM events e JOIN webhooks h ON "
    + webhook_match(
        "sqlite",
        h="h",
        account="e.account_id",
        event="e.event_type",
        pos="(instr(:pos, ',' || e.event_type || ',') > 0)",
        integration="e.integration_id",
        payload="e.payload",
    )
    + " WHERE e.rowid > :after AND e.rowid <= :last"
)
_SQLITE_EVENT_VALUES = f"({', '.join('?' * 9)})"
_SQLITE_DELIVERY_VALUES = "(?, ?, ?, ?, 'pending', 0, ?, ?)"
_SQLITE_QUEUE_VALUES = "(?, ?, ?, ?, 0, ?)"
_SQLITE_INSERT_EVENTS = f"INSERT INTO events ({_EVENT_COLUMNS}) VALUES "
_SQLITE_INSERT_EVENT = _SQLITE_INSERT_EVENTS + _SQLITE_EVENT_VALUES
_SQLITE_INSERT_DELIVERIES = f"INSERT INTO deliveries ({_DELIVERY_COLUMNS}) VALUES "
_SQLITE_INSERT_QUEUE_ROWS = f"INSERT INTO delivery_queue ({_QUEUE_COLUMNS}) VALUES "
# Rows per multi-row INSERT: one statement step for a hundred rows costs about two thirds of
# a hundred steps of ``executemany`` (each row's own reset and halt), and 100 rows of at most
# 9 values stay under SQLite's oldest limit of 999 parameters.
_SQLITE_CHUNK = 100


def _insert_rows(
    db: sqlite3.Connection, head: str, row: str, values: Sequence[tuple[Any, ...]]
) -> None:
    """``INSERT ... VALUES`` for ``values`` in order: full chunks as multi-row statements
    (always the same text, so prepared once per connection), the rest by ``executemany``."""
    full = len(values) - len(values) % _SQLITE_CHUNK
    if full:
        chunk_sql = head + ", ".join([row] * _SQLITE_CHUNK)
        for start in range(0, full, _SQLITE_CHUNK):
            flat = [value for one in values[start : start + _SQLITE_CHUNK] for value in one]
            db.execute(chunk_sql, flat)
    if full < len(values):
        db.executemany(head + row, values[full:])


def write_sqlite_events(
    db: sqlite3.Connection, rows: Sequence[EventRow]
) -> list[tuple[uuid.UUID, ...]]:
    """Insert ``rows`` (none of whose idempotency keys exists) with their deliveries and
    queue rows, on a plain sqlite3 connection inside the caller's write transaction; answers
    each row's delivery ids. Set-based: four statements for any number of rows."""
    if not rows:
        return []
    pos_types = {row.event for row in rows if row.pos}
    if pos_types and any(row.event in pos_types and not row.pos for row in rows):
        # A type both POS and not: never, from the catalog; one event at a time then.
        return [ids for row in rows for ids in write_sqlite_events(db, [row])]
    # Driver values, each converted once: a batch's rows share their account and moment.
    stamps: dict[datetime, str] = {}
    accounts: dict[uuid.UUID, str] = {}
    values: list[tuple[Any, ...]] = []
    for row in rows:
        stamp = stamps.get(row.now)
        if stamp is None:
            stamp = stamps[row.now] = sqlite_time(row.now)
        account = accounts.get(row.account_id)
        if account is None:
            account = accounts[row.account_id] = row.account_id.hex
        consumer = row.consumer_id
        values.append(
            (
                row.event_id.hex,
                account,
                row.event,
                None if consumer is None else consumer.hex,
                row.integration_id,
                row.payload,
                row.idempotency_key,
                stamp,
                row.traceparent,
            )
        )
    if len(values) == 1:  # emit, a lone request: no statement to find the rowids
        last = db.execute(_SQLITE_INSERT_EVENT, values[0]).lastrowid or 0
        after = last - 1
    else:
        (after,) = db.execute("SELECT coalesce(max(rowid), 0) FROM events").fetchone()
        _insert_rows(db, _SQLITE_INSERT_EVENTS, _SQLITE_EVENT_VALUES, values)
        (last,) = db.execute("SELECT last_insert_rowid()").fetchone()
        if last != after + len(rows):  # rowids not allocated in sequence (a full rowid space)
            raise RuntimeError("events were not given consecutive rowids")
    pos = "," + ",".join(sorted(pos_types)) + ","
    matches = db.execute(_SQLITE_MATCHES, {"after": after, "last": last, "pos": pos}).fetchall()
    found: list[list[uuid.UUID]] = [[] for _ in rows]
    if matches:
        deliveries: list[tuple[Any, ...]] = []
        queue: list[tuple[Any, ...]] = []
        for rowid, hook, ordering in matches:
            index = rowid - after - 1
            event_hex, account, _, consumer, _, _, _, stamp, _ = values[index]
            delivery = new_id_text()
            found[index].append(uuid_from_hex(delivery))
            deliveries.append((delivery, event_hex, hook, account, stamp, stamp))
            # An ordered webhook's row carries the event's consumer as its ordering key.
            queue.append((delivery, hook, event_hex, stamp, consumer if ordering else None))
        _insert_rows(db, _SQLITE_INSERT_DELIVERIES, _SQLITE_DELIVERY_VALUES, deliveries)
        _insert_rows(db, _SQLITE_INSERT_QUEUE_ROWS, _SQLITE_QUEUE_VALUES, queue)
    return [tuple(ids) for ids in found]


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
    "r AS (SELECT ($10::uuid[])[m.k] AS id, m.k, i.n, i.id AS event_id, m.webhook_id, "
    "i.account_id, "
    "i.created_at, CASE WHEN m.ordering IS NOT NULL THEN i.consumer_id END AS ordering_key "
    "FROM m JOIN i ON i.n = m.n JOIN e ON e.id = i.id), "
    f"d AS (INSERT INTO deliveries ({_DELIVERY_COLUMNS}) SELECT id, event_id, webhook_id, "
    "account_id, 'pending', 0, created_at, created_at FROM r), "
    f"q AS (INSERT INTO delivery_queue ({_QUEUE_COLUMNS}) SELECT id, webhook_id, event_id, "
    "created_at, 0, ordering_key FROM r) "
    # A data-modifying CTE always runs to completion: every row of r was inserted (q has no
    # ON CONFLICT), so the answer reads r, with each delivery's event as its position n.
    "SELECT (SELECT needed FROM enough), (SELECT ok FROM enough), array(SELECT id FROM e), "
    "array(SELECT id FROM r ORDER BY k), array(SELECT n FROM r ORDER BY k)"
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
    accounts: dict[uuid.UUID, str] = {}  # the driver parses a str in C: one str per account
    for row in rows:
        if row.account_id not in accounts:
            accounts[row.account_id] = str(row.account_id)
    columns = (
        [row.event_id for row in rows],
        [accounts[row.account_id] for row in rows],
        [row.event for row in rows],
        [row.consumer_id for row in rows],
        _or_none([row.integration_id for row in rows]),
        [row.payload for row in rows],
        _or_none([row.idempotency_key for row in rows]),
        [row.now for row in rows],
        [row.pos for row in rows],
    )
    traceparents = _or_none([row.traceparent for row in rows])
    count = spare_ids or 2 * len(rows) + 2
    while True:
        record = await fetch(_FAN_OUT_POSTGRESQL, *columns, new_ids_for_driver(count), traceparents)
        needed, ok, inserted, delivery_ids, delivery_events = record
        if ok:
            break
        count = needed
    # Each delivery comes with its event's position (1-based), grouped by event in order.
    found: list[list[uuid.UUID]] = [[] for _ in rows]
    for delivery_id, n in zip(delivery_ids, delivery_events, strict=True):
        found[n - 1].append(delivery_id)  # asyncpg's UUID is a uuid.UUID: used as it comes
    if len(inserted) == len(rows):  # every event was written (the ids are all distinct)
        return [tuple(ids) for ids in found]
    written = set(inserted)
    pairs = zip(rows, found, strict=True)
    return [tuple(ids) if row.event_id in written else None for row, ids in pairs]


def _or_none(column: list[Any]) -> list[Any]:
    """``column``, or no array at all when every value is NULL: ``unnest`` pads a shorter
    array with NULLs, and the driver checks every element it encodes (a batch's integration,
    key and trace columns are often all NULL)."""
    for value in column:
        if value is not None:
            return column
    return []
