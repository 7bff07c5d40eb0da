"""The delivery queue's SQL: claim due work under a lease, record results in batches.

``delivery_queue.available_at`` is both the due time and the lease: claiming moves it to
``now + lease`` and stamps ``lease_owner``; a worker that dies simply lets it expire, and the
row becomes due again. Every write of a result is guarded by ``lease_owner`` so a worker whose
lease expired (and whose row another worker took) cannot overwrite the newer claim.

Claims and successes go through the worker's own connection (:mod:`hookline.store.queue_link`);
everything else a worker records (retries, failures, drops, disables) is written here, in an
ordinary transaction. The few statements whose SQL or values differ by backend sit behind
:class:`NativeWrites`, one implementation per backend, which each backend's delivery queue
(:mod:`hookline.store.delivery_queue`) passes in: nothing here asks which database it is.
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple, Protocol

from sqlalchemy import bindparam, delete, func, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection

from hookline.ids import new_id_text, uuid_from_hex
from hookline.store.db import sqlite_call
from hookline.store.ordering import head_only
from hookline.store.statuses import DeliveryStatus, Outcome, WebhookStatus
from hookline.store.tables import deliveries, delivery_queue, webhook_logs, webhooks
from hookline.store.types import UTCDateTime

dq = delivery_queue


class ClaimedDelivery(NamedTuple):
    """What sending one claimed delivery needs. Immutable; a named tuple rather than a frozen
    dataclass because a worker builds one per delivery, and a frozen dataclass's ``__init__``
    costs five times as much (2 µs against 0.4)."""

    delivery_id: uuid.UUID
    webhook_id: uuid.UUID
    event_id: uuid.UUID
    attempt: int  # 1-based number of the attempt about to be made
    account_id: uuid.UUID
    event_type: str
    payload: bytes
    url: str | None  # None when the webhook vanished
    secret_encrypted: str | None
    webhook_status: str | None
    integration_id: int | None
    failing_since: datetime | None
    rate_limit: float | None = None  # the webhook's rate_limit_per_second
    ordering: str | None = None  # the webhook's ordering (None: none)


@dataclass(slots=True)
class AttemptRecord:
    """One attempt's result (or a drop, for a delivery whose webhook is no longer active)."""

    delivery: ClaimedDelivery
    outcome: Outcome
    http_status: int | None = None
    duration_ms: float = 0.0
    error_class: str | None = None
    response_excerpt: str | None = None
    next_attempt_at: datetime | None = None
    disable_reason: str | None = None
    request_headers: str | None = None  # the header block sent (signatures included)
    response_headers: str | None = None  # the header block received


async def _relaxed_commit(conn: AsyncConnection) -> None:
    """Worker bookkeeping need not wait for the WAL flush: if the server crashes and loses it,
    the delivery is simply sent again, which at-least-once delivery allows. (Events themselves
    are committed durably by ``emit_draft``.)"""
    await conn.exec_driver_sql("SET LOCAL synchronous_commit = off")


def sqlite_time(value: datetime) -> str:
    """How the UTCDateTime column stores a moment on SQLite (naive UTC, microseconds)."""
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")


def sqlite_datetime(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value).replace(tzinfo=UTC)


async def record(
    conn: AsyncConnection,
    native: NativeWrites,
    *,
    owner: str,
    now: datetime,
    records: Sequence[AttemptRecord],
) -> set[uuid.UUID]:
    """Write a batch of results in a handful of statements; returns the ids still owned.
    ``native`` is the backend's way with the per-attempt statements (:data:`POSTGRES_WRITES`
    or :data:`SQLITE_WRITES`, chosen by the backend's delivery queue).

    Log rows are written for every real attempt (the request was sent, whatever happened to
    the lease); queue and delivery rows change only where this worker still holds the lease.
    """
    if not records:
        return set()
    await native.begin(conn)
    finished = [item.delivery.delivery_id for item in records if item.outcome != Outcome.RETRY]
    retries = [item for item in records if item.outcome == Outcome.RETRY]
    owned: set[uuid.UUID] = set()
    if finished:  # the common case costs one statement: delete what we still lease
        owned.update(await native.delete_leased(conn, owner, finished))
    if retries:
        mine_retrying = set(
            (
                await conn.execute(
                    select(dq.c.delivery_id)
                    .where(
                        dq.c.delivery_id.in_([item.delivery.delivery_id for item in retries]),
                        dq.c.lease_owner == owner,
                    )
                    .with_for_update()
                )
            ).scalars()
        )
        retries = [item for item in retries if item.delivery.delivery_id in mine_retrying]
        owned.update(mine_retrying)
    if retries:
        await conn.execute(
            update(dq)
            .where(dq.c.delivery_id == bindparam("b_id"))
            .values(available_at=bindparam("b_at"), lease_owner=None),
            [{"b_id": item.delivery.delivery_id, "b_at": item.next_attempt_at} for item in retries],
        )
    mine = [item for item in records if item.delivery.delivery_id in owned]
    attempted = [item for item in mine if item.outcome != Outcome.DROPPED]
    dropped = [item.delivery.delivery_id for item in mine if item.outcome == Outcome.DROPPED]

    if attempted:
        stamp = native.time(now)
        await native.update_deliveries(
            conn,
            [
                (
                    _delivery_status(item.outcome),
                    item.delivery.attempt,
                    item.http_status,
                    stamp,
                    native.uid(item.delivery.delivery_id),
                )
                for item in attempted
            ],
        )
    if dropped:
        await conn.execute(
            update(deliveries)
            .where(deliveries.c.id.in_(dropped))
            .values(status=DeliveryStatus.FAILED, updated_at=now)
        )
    logged = [item for item in records if item.outcome != Outcome.DROPPED]
    if logged:
        stamp = native.time(now)
        await native.insert_logs(conn, [_log_row(native, item, stamp) for item in logged])
    await _update_webhooks(conn, now, logged)
    return owned


def _delivery_status(outcome: Outcome) -> DeliveryStatus:
    if outcome == Outcome.DELIVERED:
        return DeliveryStatus.DELIVERED
    return DeliveryStatus.PENDING if outcome == Outcome.RETRY else DeliveryStatus.FAILED


def counted_attempts(attempt: str) -> str:
    """The SET clause for ``deliveries.attempts`` after the attempt numbered ``attempt``.

    Attempts are cumulative across manual redeliveries (which restart the schedule at queue
    attempt 0) and include attempts lost with a crashed worker.
    """
    return f"attempts = CASE WHEN attempts + 1 > {attempt} THEN attempts + 1 ELSE {attempt} END"


# The two per-attempt statements of a batch bypass SQLAlchemy's per-row type processing (it
# costs more CPU than the database work itself); values are converted to the driver's types
# here, exactly as the column types would (UUID: 32 hex chars on SQLite; naive UTC text).
# The worker's SQLite link (queue_link) runs the same two statements.
UPDATE_DELIVERIES_SQLITE = (
    f"UPDATE deliveries SET status = ?1, {counted_attempts('?2')}, "
    "last_http_status = ?3, updated_at = ?4 WHERE id = ?5"
)
LOG_COLUMNS = (
    "id",
    "webhook_id",
    "delivery_id",
    "event_id",
    "account_id",
    "event",
    "url",
    "integration_id",
    "http_status",
    "attempt",
    "duration_ms",
    "outcome",
    "error_class",
    "response_excerpt",
    "next_attempt_at",
    "created_at",
    "request_headers",
    "response_headers",
)
_INSERT_LOGS = (
    f"INSERT INTO {webhook_logs.name} ({', '.join(LOG_COLUMNS)}) "
    f"VALUES ({', '.join('?' for _ in LOG_COLUMNS)})"
)
# PostgreSQL takes a whole batch as one statement over column arrays: one execution instead
# of one per row, which costs the server (and asyncpg) several times less per row.
_UPDATE_DELIVERIES_PG = (
    f"UPDATE deliveries d SET status = v.status, {counted_attempts('v.attempt')}, "
    "last_http_status = v.http_status, updated_at = v.updated_at "
    "FROM unnest($1::varchar[], $2::int[], $3::int[], $4::timestamptz[], $5::uuid[]) "
    "AS v(status, attempt, http_status, updated_at, id) WHERE d.id = v.id"
)
_LOG_TYPES = (
    "uuid",
    "uuid",
    "uuid",
    "uuid",
    "uuid",
    "varchar",
    "varchar",
    "int",
    "int",
    "int",
    "float8",
    "varchar",
    "varchar",
    "text",
    "timestamptz",
    "timestamptz",
    "text",
    "text",
)
_INSERT_LOGS_PG = (
    f"INSERT INTO {webhook_logs.name} ({', '.join(LOG_COLUMNS)}) SELECT * FROM unnest("
    + ", ".join(f"${i}::{kind}[]" for i, kind in enumerate(_LOG_TYPES, 1))
    + ")"
)


class NativeWrites(Protocol):
    """One backend's per-attempt statements of :func:`record`, with values converted to its
    driver's own types (as the column types would convert them)."""

    async def begin(self, conn: AsyncConnection) -> None: ...

    def uid(self, value: uuid.UUID) -> Any: ...

    def time(self, value: datetime) -> Any: ...

    async def delete_leased(
        self, conn: AsyncConnection, owner: str, ids: list[uuid.UUID]
    ) -> list[uuid.UUID]:
        """Delete the queue rows of ``ids`` still leased by ``owner``; return their ids."""
        ...

    async def update_deliveries(self, conn: AsyncConnection, rows: list[tuple[Any, ...]]) -> None:
        """Rows of (status, attempt, http status, updated at, delivery id)."""
        ...

    async def insert_logs(self, conn: AsyncConnection, rows: list[tuple[Any, ...]]) -> None:
        """Rows of :data:`LOG_COLUMNS`."""
        ...


class _PostgresWrites:
    """Each statement once over column arrays (``unnest``), in a relaxed commit."""

    async def begin(self, conn: AsyncConnection) -> None:
        await _relaxed_commit(conn)

    def uid(self, value: uuid.UUID) -> Any:
        return value

    def time(self, value: datetime) -> Any:
        return value

    async def delete_leased(
        self, conn: AsyncConnection, owner: str, ids: list[uuid.UUID]
    ) -> list[uuid.UUID]:
        result = await conn.exec_driver_sql(
            "DELETE FROM delivery_queue WHERE lease_owner = $1 AND delivery_id = ANY($2::uuid[]) "
            "RETURNING delivery_id",
            (owner, ids),
        )
        return [delivery_id for (delivery_id,) in result.all()]

    async def update_deliveries(self, conn: AsyncConnection, rows: list[tuple[Any, ...]]) -> None:
        await self._arrays(conn, _UPDATE_DELIVERIES_PG, rows)

    async def insert_logs(self, conn: AsyncConnection, rows: list[tuple[Any, ...]]) -> None:
        await self._arrays(conn, _INSERT_LOGS_PG, rows)

    @staticmethod
    async def _arrays(conn: AsyncConnection, sql: str, rows: list[tuple[Any, ...]]) -> None:
        columns = tuple(list(column) for column in zip(*rows, strict=True))
        await conn.exec_driver_sql(sql, columns)


class _SQLiteWrites:
    """Each statement run per row in one hand-off to aiosqlite's thread (instead of three)."""

    async def begin(self, conn: AsyncConnection) -> None:
        return None  # SQLite runs with synchronous = NORMAL anyway

    def uid(self, value: uuid.UUID) -> Any:
        return value.hex

    def time(self, value: datetime) -> Any:
        return sqlite_time(value)

    async def delete_leased(
        self, conn: AsyncConnection, owner: str, ids: list[uuid.UUID]
    ) -> list[uuid.UUID]:
        marks = ", ".join("?" for _ in ids)
        sql = (
            f"DELETE FROM delivery_queue WHERE lease_owner = ? AND delivery_id IN ({marks}) "
            "RETURNING delivery_id"
        )
        rows = await sqlite_call(conn, sql, _fetchall, sql, (owner, *(value.hex for value in ids)))
        return [uuid_from_hex(delivery_id) for (delivery_id,) in rows]

    async def update_deliveries(self, conn: AsyncConnection, rows: list[tuple[Any, ...]]) -> None:
        sql = UPDATE_DELIVERIES_SQLITE
        await sqlite_call(conn, sql, _executemany, sql, rows)

    async def insert_logs(self, conn: AsyncConnection, rows: list[tuple[Any, ...]]) -> None:
        await sqlite_call(conn, _INSERT_LOGS, _executemany, _INSERT_LOGS, rows)


POSTGRES_WRITES: NativeWrites = _PostgresWrites()
SQLITE_WRITES: NativeWrites = _SQLiteWrites()


def _fetchall(db: sqlite3.Connection, sql: str, params: tuple[Any, ...]) -> list[Any]:
    return db.execute(sql, params).fetchall()


def _executemany(db: sqlite3.Connection, sql: str, rows: list[tuple[Any, ...]]) -> None:
    db.executemany(sql, rows).close()


def _log_row(native: NativeWrites, item: AttemptRecord, stamp: Any) -> tuple[Any, ...]:
    delivery = item.delivery
    u = native.uid
    return (
        new_id_text(),
        u(delivery.webhook_id),
        u(delivery.delivery_id),
        u(delivery.event_id),
        u(delivery.account_id),
        delivery.event_type,
        delivery.url or "",
        delivery.integration_id,
        item.http_status or 0,
        delivery.attempt,
        round(item.duration_ms, 3),
        item.outcome,
        item.error_class,
        item.response_excerpt,
        None if item.next_attempt_at is None else native.time(item.next_attempt_at),
        stamp,
        item.request_headers,
        item.response_headers,
    )


async def _update_webhooks(
    conn: AsyncConnection, now: datetime, logged: Sequence[AttemptRecord]
) -> None:
    """Track ``failing_since`` (by each webhook's latest result) and apply disables."""
    latest: dict[uuid.UUID, AttemptRecord] = {}
    disables: dict[uuid.UUID, str] = {}
    for item in logged:
        latest[item.delivery.webhook_id] = item
        if item.outcome == Outcome.DISABLED:
            disables[item.delivery.webhook_id] = item.disable_reason or "disabled"
    # Skip statements that would change nothing, judged by the state seen at claim time (a
    # stale view heals itself: the next claim of that webhook sees the current value).
    healthy = sorted(
        hook
        for hook, item in latest.items()
        if item.outcome == Outcome.DELIVERED and item.delivery.failing_since is not None
    )
    failing = sorted(
        hook
        for hook, item in latest.items()
        if item.outcome != Outcome.DELIVERED and item.delivery.failing_since is None
    )
    if healthy:
        await conn.execute(
            update(webhooks)
            .where(webhooks.c.id.in_(healthy), webhooks.c.failing_since.is_not(None))
            .values(failing_since=None)
        )
    if failing:
        await conn.execute(
            update(webhooks)
            .where(webhooks.c.id.in_(failing), webhooks.c.failing_since.is_(None))
            .values(failing_since=now)
        )
    for hook, reason in sorted(disables.items()):
        await disable_webhook(conn, hook, reason=reason[:200], now=now)


async def disable_webhook(
    conn: AsyncConnection, webhook_id: uuid.UUID, *, reason: str, now: datetime
) -> None:
    """Set a webhook inactive and drop its pending deliveries from the queue (marked failed)."""
    await conn.execute(
        update(webhooks)
        .where(webhooks.c.id == webhook_id, webhooks.c.status == WebhookStatus.ACTIVE)
        .values(status=WebhookStatus.INACTIVE, disabled_reason=reason, updated_at=now)
    )
    await conn.execute(delete(dq).where(dq.c.webhook_id == webhook_id))
    await conn.execute(
        update(deliveries)
        .where(deliveries.c.webhook_id == webhook_id, deliveries.c.status == DeliveryStatus.PENDING)
        .values(status=DeliveryStatus.FAILED, updated_at=now)
    )


_RENEW_CHUNK = 500


async def renew_leases(
    conn: AsyncConnection, *, owner: str, delivery_ids: Sequence[uuid.UUID], until: datetime
) -> int:
    """Extend to ``until`` the leases ``owner`` still holds on ``delivery_ids``; returns how
    many it still held (a lease already taken over by another worker stays theirs)."""
    renewed = 0
    for start in range(0, len(delivery_ids), _RENEW_CHUNK):
        chunk = list(delivery_ids[start : start + _RENEW_CHUNK])
        result = await conn.execute(
            update(dq)
            .where(dq.c.lease_owner == owner, dq.c.delivery_id.in_(chunk))
            .values(available_at=until)
        )
        renewed += result.rowcount
    return renewed


#: The distinct webhooks with queued rows as ``hooks(id)`` (a trailing NULL ends the walk):
#: a loose index scan, one probe of ``(webhook_id, available_at)`` per webhook. Both backends.
WEBHOOK_WALK = (
    "WITH RECURSIVE hooks(id) AS (SELECT (SELECT webhook_id FROM delivery_queue "
    "ORDER BY webhook_id LIMIT 1) UNION ALL SELECT (SELECT webhook_id FROM delivery_queue "
    "WHERE webhook_id > hooks.id ORDER BY webhook_id LIMIT 1) FROM hooks "
    "WHERE hooks.id IS NOT NULL) "
)
# One probe per webhook with queued rows, down ``(webhook_id, available_at)``: the claim's
# own walk (store/queue_link.py), so its cost is the claim's, whatever the backlog. The same
# SQL on both backends (a scalar subquery where PostgreSQL alone would take a LATERAL).
_NEXT_DUE = text(
    WEBHOOK_WALK
    + "SELECT min((SELECT d.available_at FROM delivery_queue d WHERE d.webhook_id = hooks.id "
    f"AND {head_only('d')} ORDER BY d.webhook_id, d.available_at LIMIT 1)) AS earliest "
    "FROM hooks WHERE hooks.id IS NOT NULL"
).columns(earliest=UTCDateTime())


async def next_due(conn: AsyncConnection) -> datetime | None:
    """The earliest ``available_at`` in the queue (a due time or a lease expiry), among the
    rows a claim could take then (a row held behind its ordered stream's head waits for it)."""
    earliest: datetime | None = (await conn.execute(_NEXT_DUE)).scalar()
    return earliest


@dataclass(frozen=True)
class QueueStats:
    depth: int  # every queued delivery: due, scheduled for a retry, or leased
    due: int  # due now and not leased
    oldest_due_age_seconds: float  # how late the oldest due delivery is (0 when none)


async def queue_stats(conn: AsyncConnection, now: datetime) -> QueueStats:
    depth = (await conn.execute(select(func.count()).select_from(dq))).scalar_one()
    due_count, oldest = (
        await conn.execute(
            select(func.count(), func.min(dq.c.available_at)).where(dq.c.available_at <= now)
        )
    ).one()
    age = max(0.0, (now - oldest).total_seconds()) if oldest is not None else 0.0
    return QueueStats(depth=int(depth), due=int(due_count), oldest_due_age_seconds=age)
