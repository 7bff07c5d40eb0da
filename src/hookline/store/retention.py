"""Retention SQL: delete expired events, finished deliveries and attempt logs in small batches.

Ids are UUIDv7, so "created before T" is "id below the smallest UUIDv7 of T": every batch is
a short keyset step along a primary key (no scan of the whole table, no ``created_at``
index needed), and the caller carries the last id seen from one batch to the next.

Work still to be done is never touched: a delivery that is ``pending`` or has a queue row
(being sent, or waiting for a retry) stays, with its attempt logs and its event. On
PostgreSQL the rows of a batch are locked first (``FOR UPDATE SKIP LOCKED``) and deleted by a
second statement that checks again under a fresh snapshot: a redelivery that committed in
between is seen, one that comes after waits for the batch and then finds the row gone
(``ERROR_DELIVERY_GONE``) instead of being deleted with it. SQLite's single writer makes a
batch atomic anyway.
"""

from __future__ import annotations

import sqlite3
import uuid
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from sqlalchemy import ColumnElement, Table, and_, delete, exists, func, not_, or_, select, text
from sqlalchemy.ext.asyncio import AsyncConnection

from hookline.store.db import sqlite_call
from hookline.store.statuses import DeliveryStatus
from hookline.store.tables import deliveries, delivery_queue, events, webhook_logs

# pg_try_advisory_lock(key, hashtext(schema)): one purge at a time per hookline schema.
PURGE_LOCK_KEY = 4242002
# Pages given back to the file system per SQLite transaction (4 KiB each): short write turns.
VACUUM_PAGES_PER_STEP = 2048


class Kind(StrEnum):
    """What a purge removes, in the order it removes them (children before parents)."""

    ATTEMPTS = "attempts"
    DELIVERIES = "deliveries"
    EVENTS = "events"


_TABLES: dict[Kind, Table] = {
    Kind.ATTEMPTS: webhook_logs,
    Kind.DELIVERIES: deliveries,
    Kind.EVENTS: events,
}


@dataclass(frozen=True, slots=True)
class Step:
    """One batch: rows removed, and the last id looked at (None: nothing left below the
    bound)."""

    removed: int
    last_id: uuid.UUID | None


def id_bound(moment: datetime) -> uuid.UUID:
    """The smallest UUIDv7 of ``moment``'s millisecond: every id made before it is smaller."""
    millis = int(moment.timestamp() * 1000)
    return uuid.UUID(int=(millis << 80) | (0x7 << 76) | (0b10 << 62))


def _queued(delivery_id: ColumnElement[uuid.UUID]) -> ColumnElement[bool]:
    return exists().where(delivery_queue.c.delivery_id == delivery_id)


def _finished(table: Table = deliveries) -> ColumnElement[bool]:
    """A delivery nobody will send again: not pending, no queue row."""
    return and_(table.c.status != DeliveryStatus.PENDING, not_(_queued(table.c.id)))


def _event_kept(bound: uuid.UUID) -> ColumnElement[bool]:
    """An event keeps living while one of its deliveries does (unfinished, or younger)."""
    d = deliveries
    return exists().where(
        d.c.event_id == events.c.id,
        or_(d.c.id >= bound, d.c.status == DeliveryStatus.PENDING, _queued(d.c.id)),
    )


def _window(
    table: Table, after: uuid.UUID | None, bound: uuid.UUID, *, inclusive: bool = False
) -> ColumnElement[bool]:
    """Ids after ``after`` (if any) and below ``bound`` (or up to it: ``inclusive``)."""
    condition = table.c.id <= bound if inclusive else table.c.id < bound
    return condition if after is None else and_(table.c.id > after, condition)


async def _window_end(
    conn: AsyncConnection, table: Table, after: uuid.UUID | None, bound: uuid.UUID, limit: int
) -> uuid.UUID | None:
    """The last id of the next ``limit`` ids below the bound: the batch's keyset window."""
    ids = (
        select(table.c.id)
        .where(_window(table, after, bound))
        .order_by(table.c.id)
        .limit(limit)
        .subquery()
    )
    # ORDER BY ... DESC LIMIT 1, not max(): PostgreSQL has no max() for uuid.
    last = select(ids.c.id).order_by(ids.c.id.desc()).limit(1)
    return (await conn.execute(last)).scalar()


async def purge_step(
    conn: AsyncConnection,
    kind: Kind,
    *,
    after: uuid.UUID | None,
    bound: uuid.UUID,
    limit: int,
) -> Step:
    """Delete the expired rows of ``kind`` among the next ``limit`` ids after ``after``.

    Queue rows are looked up by primary key for the batch's ids only: a ``NOT EXISTS``
    against ``delivery_queue`` lets the planner hash the whole queue (a sequential scan of a
    backlog per batch).
    """
    if conn.dialect.name == "sqlite":
        removed, last = await sqlite_call(
            conn,
            "purge step",
            _purge_step_sqlite,
            kind,
            "" if after is None else after.hex,  # "" sorts before every id
            bound.hex,
            limit,
        )
        return Step(removed, None if last is None else uuid.UUID(hex=last))
    if conn.dialect.name == "postgresql":
        await conn.exec_driver_sql("SET LOCAL synchronous_commit = off")  # redone if lost
    table = _TABLES[kind]
    end = await _window_end(conn, table, after, bound, limit)
    if end is None:
        return Step(0, None)
    in_window = _window(table, after, end, inclusive=True)
    if kind is Kind.ATTEMPTS:
        # Logs are referenced by nothing: no locks, just the queue check.
        rows = (await conn.execute(select(table.c.id, table.c.delivery_id).where(in_window))).all()
        busy = await _queued_among(conn, {row.delivery_id for row in rows})
        doomed = [row.id for row in rows if row.delivery_id not in busy]
        if not doomed:
            return Step(0, end)
        result = await conn.execute(delete(table).where(table.c.id.in_(doomed)))
        return Step(result.rowcount, end)
    if kind is Kind.DELIVERIES:
        # A queued delivery is pending (a redelivery sets the status first, under the row
        # lock taken here): the status is the filter, the queue a second check.
        keep_if = deliveries.c.status != DeliveryStatus.PENDING
    else:
        keep_if = not_(_event_kept(bound))
    locked = (
        (
            await conn.execute(
                select(table.c.id)
                .where(in_window, keep_if)
                .with_for_update(skip_locked=True, of=table)
            )
        )
        .scalars()
        .all()
    )
    if kind is Kind.DELIVERIES and locked:
        busy = await _queued_among(conn, set(locked))
        locked = [delivery_id for delivery_id in locked if delivery_id not in busy]
    if not locked:
        return Step(0, end)
    result = await conn.execute(delete(table).where(table.c.id.in_(locked), keep_if))
    return Step(result.rowcount, end)


# SQLite: one batch in one hand-off to the driver's thread. Through SQLAlchemy a batch took
# a dozen hand-offs with the single writer's lock held between them; in the 500 events/s soak
# the purge passes then stood in front of every claim for seconds. Uuids are stored as 32 hex
# characters, which sort as the uuids do.
_SQLITE_WINDOW_END = (
    "SELECT max(id) FROM (SELECT id FROM {table} WHERE id < ?2 AND id > ?1 ORDER BY id LIMIT ?3)"
)
_SQLITE_NOT_QUEUED = "NOT EXISTS (SELECT 1 FROM delivery_queue q WHERE q.delivery_id = {id})"
_SQLITE_PURGE = {
    Kind.ATTEMPTS: "DELETE FROM webhook_logs WHERE id <= ?2 AND id > ?1 AND "
    + _SQLITE_NOT_QUEUED.format(id="webhook_logs.delivery_id"),
    Kind.DELIVERIES: "DELETE FROM deliveries WHERE id <= ?2 AND id > ?1 AND "
    f"status != '{DeliveryStatus.PENDING}' AND " + _SQLITE_NOT_QUEUED.format(id="deliveries.id"),
    Kind.EVENTS: "DELETE FROM events WHERE id <= ?2 AND id > ?1 AND NOT EXISTS "
    "(SELECT 1 FROM deliveries d WHERE d.event_id = events.id AND (d.id >= ?3 OR "
    f"d.status = '{DeliveryStatus.PENDING}' OR EXISTS (SELECT 1 FROM delivery_queue q "
    "WHERE q.delivery_id = d.id)))",
}


def _purge_step_sqlite(
    db: sqlite3.Connection, kind: Kind, after: str, bound: str, limit: int
) -> tuple[int, str | None]:
    window = _SQLITE_WINDOW_END.format(table=_TABLES[kind].name)
    end = db.execute(window, (after, bound, limit)).fetchone()[0]
    if end is None:
        return 0, None
    params = (after, end, bound) if kind is Kind.EVENTS else (after, end)
    return db.execute(_SQLITE_PURGE[kind], params).rowcount, str(end)


async def _queued_among(conn: AsyncConnection, delivery_ids: set[uuid.UUID]) -> set[uuid.UUID]:
    if not delivery_ids:
        return set()
    queued = await conn.execute(
        select(delivery_queue.c.delivery_id).where(delivery_queue.c.delivery_id.in_(delivery_ids))
    )
    return set(queued.scalars())


async def count_expired(conn: AsyncConnection, kind: Kind, bound: uuid.UUID) -> int:
    """How many rows of ``kind`` a purge up to ``bound`` would remove now (``--dry-run``)."""
    if kind is Kind.ATTEMPTS:
        where = and_(webhook_logs.c.id < bound, not_(_queued(webhook_logs.c.delivery_id)))
        table = webhook_logs
    elif kind is Kind.DELIVERIES:
        where, table = and_(deliveries.c.id < bound, _finished()), deliveries
    else:
        where, table = and_(events.c.id < bound, not_(_event_kept(bound))), events
    return int(
        (await conn.execute(select(func.count()).select_from(table).where(where))).scalar_one()
    )


# --- holding the purge to one process (PostgreSQL) ---------------------------------------


async def try_purge_lock(conn: AsyncConnection, schema: str | None) -> bool:
    """Take the session-level purge lock on ``conn`` if no other process holds it."""
    return bool(
        (
            await conn.execute(
                text("SELECT pg_try_advisory_lock(:key, hashtext(:scope))"),
                {"key": PURGE_LOCK_KEY, "scope": schema or ""},
            )
        ).scalar()
    )


async def release_purge_lock(conn: AsyncConnection, schema: str | None) -> None:
    await conn.execute(
        text("SELECT pg_advisory_unlock(:key, hashtext(:scope))"),
        {"key": PURGE_LOCK_KEY, "scope": schema or ""},
    )


# --- giving space back (SQLite) ----------------------------------------------------------


async def sqlite_free_pages(conn: AsyncConnection) -> tuple[int, str]:
    """Free pages in the file and its auto_vacuum mode (``none``, ``full``, ``incremental``)."""
    free = (await conn.exec_driver_sql("PRAGMA freelist_count")).scalar_one()
    mode = (await conn.exec_driver_sql("PRAGMA auto_vacuum")).scalar_one()
    return int(free), {0: "none", 1: "full", 2: "incremental"}.get(int(mode), str(mode))


def _incremental_vacuum(db: sqlite3.Connection, pages: int) -> int:
    if db.execute("PRAGMA auto_vacuum").fetchone()[0] != 2:
        return 0
    free = int(db.execute("PRAGMA freelist_count").fetchone()[0])
    step = min(free, pages)
    if step:
        # The pragma frees one page per step of the statement, and only executescript()
        # steps a statement without result columns to its end (it runs in autocommit).
        db.executescript(f"PRAGMA incremental_vacuum({int(step)});")
    return step


async def sqlite_incremental_vacuum(conn: AsyncConnection, pages: int) -> int:
    """Give up to ``pages`` free pages back to the file system (auto_vacuum=INCREMENTAL);
    returns how many. ``conn`` must not be in a transaction: the pragma commits itself."""
    return await sqlite_call(conn, "PRAGMA incremental_vacuum", _incremental_vacuum, pages)


def _convert_to_incremental(db: sqlite3.Connection) -> None:
    db.execute("PRAGMA auto_vacuum=INCREMENTAL").close()
    db.execute("VACUUM").close()


async def sqlite_enable_incremental_vacuum(conn: AsyncConnection) -> None:
    """Rewrite a file made before auto_vacuum was set (``VACUUM``: outside any transaction,
    takes the file for as long as copying it lasts)."""
    await sqlite_call(conn, "VACUUM", _convert_to_incremental)
