"""The delivery worker's own connection to the queue: a claim or a batch of successes in one
round trip.

Through the shared pool a claim cost four round trips on PostgreSQL (BEGIN, SET LOCAL, the
claim, COMMIT) and five thread hand-offs on SQLite, and each one waited for its turn on an
event loop busy with hundreds of requests; on SQLite the writer lock was held all that time.
A link instead runs each unit as one statement (PostgreSQL, autocommit) or as one function on
the event loop's thread (SQLite, ``BEGIN IMMEDIATE`` to ``COMMIT`` with no hand-off at all).

Its sessions do not wait for the WAL flush (``synchronous_commit = off``; SQLite runs with
``synchronous = NORMAL`` anyway): a lease or a result lost in a server crash only means the
delivery is sent again, which at-least-once delivery allows. Events themselves are always
committed durably, by ``emit_draft`` on the shared pool.

Only the common result, ``Outcome.DELIVERED``, goes through a link; retries, failures and drops take
the general path (:func:`hookline.store.queue.record`) in an ordinary transaction.
"""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple, Protocol, TypeVar

import asyncpg
from sqlalchemy.engine import make_url

from hookline.ids import new_id_text, uuid_from_hex
from hookline.store import rate_windows
from hookline.store.db import Database
from hookline.store.listen import plain_postgres_url
from hookline.store.ordering import head_only
from hookline.store.queue import (
    LOG_COLUMNS,
    UPDATE_DELIVERIES_SQLITE,
    WEBHOOK_WALK,
    AttemptRecord,
    ClaimedDelivery,
    counted_attempts,
    sqlite_datetime,
    sqlite_time,
)
from hookline.store.rate_windows import RatedClaim
from hookline.store.sqlite_inline import InlineSQLite
from hookline.store.statuses import DeliveryStatus, Outcome

T = TypeVar("T")

# What a claim reads for each delivery, by the name of its ClaimedDelivery field: both
# backends select these columns in this order, and the rows are read back by these names.
# (c: the claimed queue row, e: its event, w: its webhook, absent when it vanished.)
_CLAIMED_COLUMNS = {
    "delivery_id": "c.delivery_id",
    "webhook_id": "c.webhook_id",
    "event_id": "c.event_id",
    "attempt": "c.attempt",
    "account_id": "e.account_id",
    "event_type": "e.event_type",
    "payload": "e.payload",
    "url": "w.url",
    "secret_encrypted": "w.secret_encrypted",
    "webhook_status": "w.status",
    "integration_id": "w.integration_id",
    "failing_since": "w.failing_since",
    "rate_limit": "w.rate_limit_per_second",
    "ordering": "w.ordering",
}
assert tuple(_CLAIMED_COLUMNS) == ClaimedDelivery._fields
_SELECT_CLAIMED = (
    f"SELECT {', '.join(_CLAIMED_COLUMNS.values())} "
    "FROM {claimed} c JOIN events e ON e.id = c.event_id "
    "LEFT JOIN webhooks w ON w.id = c.webhook_id"
)
# The attempt number is counted at claim time, so an attempt lost with a crashed worker still
# counts: a delivery that kills workers cannot be retried forever.
_DETAILS = _SELECT_CLAIMED.replace("{claimed}", "claimed")
# The fair claim: a loose index scan walks the distinct webhooks that have queued rows (one
# probe of ix_delivery_queue_webhook_id_available_at each, however many rows they have), takes
# each one's oldest due rows, at most its share ($6/$7: webhook -> rows it may still take;
# $5 for a webhook not listed), and deals them out in turns: every webhook's first row, then
# every second row, ..., so one webhook's backlog never crowds out another's first delivery.
# The picked ids go to the UPDATE as an array, not as a join: joined, the planner hashed the
# whole queue to find them; as ``= ANY(ARRAY(...))`` they are looked up by primary key.
_CLAIM_POSTGRESQL = (
    "WITH RECURSIVE hooks(webhook_id) AS ("
    "(SELECT webhook_id FROM delivery_queue ORDER BY webhook_id LIMIT 1) UNION ALL "
    "SELECT (SELECT n.webhook_id FROM delivery_queue n WHERE n.webhook_id > h.webhook_id "
    "ORDER BY n.webhook_id LIMIT 1) FROM hooks h WHERE h.webhook_id IS NOT NULL), "
    "claimed AS (UPDATE delivery_queue q SET available_at = $3, lease_owner = $4, "
    "attempt = q.attempt + 1 WHERE q.delivery_id = ANY(ARRAY("
    "SELECT p.delivery_id FROM hooks h CROSS JOIN LATERAL ("
    "SELECT s.delivery_id, s.available_at, "
    "row_number() OVER (ORDER BY s.available_at) AS turn FROM ("
    "SELECT d.delivery_id, d.available_at FROM delivery_queue d "
    f"WHERE d.webhook_id = h.webhook_id AND d.available_at <= $1 AND {head_only('d')} "
    "ORDER BY d.webhook_id, d.available_at LIMIT COALESCE(("
    "SELECT l.k FROM unnest($6::uuid[], $7::int[]) AS l(id, k) WHERE l.id = h.webhook_id), $5) "
    "FOR UPDATE SKIP LOCKED) s) p "
    "WHERE h.webhook_id IS NOT NULL ORDER BY p.turn, p.available_at LIMIT $2)) "
    "RETURNING q.delivery_id, q.webhook_id, q.event_id, q.attempt) " + _DETAILS
)
# Rate-limited webhooks are claimed by their own statement (store/rate_windows.py).
_CLAIM_RATED_POSTGRESQL = rate_windows.claim_statement(_DETAILS)
# SQLite runs the same walk as separate statements inside one ``BEGIN IMMEDIATE`` on the
# event loop's thread (one process, so nothing to skip): the distinct webhooks, how many due
# rows each has (up to its share), the turns dealt in Python, then one lease update per
# webhook (a per-row update cost more than the whole walk).
_HOOKS_SQLITE = WEBHOOK_WALK + "SELECT id FROM hooks WHERE id IS NOT NULL"
_DUE_SQLITE = (
    "SELECT d.delivery_id FROM delivery_queue d WHERE d.webhook_id = ?1 "
    f"AND d.available_at <= ?2 AND {head_only('d')} "
    "ORDER BY d.webhook_id, d.available_at LIMIT ?3"
)
_DUE_COUNT_SQLITE = f"SELECT count(*) FROM ({_DUE_SQLITE})"
_LEASE_ONE_SQLITE = (
    "UPDATE delivery_queue SET available_at = ?, lease_owner = ?, attempt = attempt + 1 "
    "WHERE delivery_id = ?"
)
_LEASE_SQLITE = (
    "UPDATE delivery_queue SET available_at = ?4, lease_owner = ?5, attempt = attempt + 1 "
    f"WHERE delivery_id IN ({_DUE_SQLITE})"
)
# Rows just claimed carry this worker's name and this claim's exact lease time; they are
# found from ``(webhook_id, available_at)`` through the webhooks the claim leased from (a JSON
# array), the queue's only index on the time (migration 0011).
_CLAIMED_SQLITE = (
    _SELECT_CLAIMED.replace("{claimed}", "delivery_queue")
    + " WHERE c.webhook_id IN (SELECT value FROM json_each(?1)) AND c.available_at = ?2"
    " AND c.lease_owner = ?3 ORDER BY c.delivery_id"
)


# Successes: the queue rows this worker still leases leave the queue, their deliveries are
# marked delivered, and every attempt is logged (the request was made whatever happened to the
# lease).
def _set_delivered(attempt: str, status: str, now: str) -> str:
    return (
        f"status = '{DeliveryStatus.DELIVERED}', {counted_attempts(attempt)}, "
        f"last_http_status = {status}, updated_at = {now}"
    )


_DELIVERED_POSTGRESQL = (
    "WITH done AS (DELETE FROM delivery_queue WHERE lease_owner = $1 "
    "AND delivery_id = ANY($2::uuid[]) RETURNING delivery_id), "
    "marked AS (UPDATE deliveries d SET "
    + _set_delivered("v.attempt", "v.http_status", "$5")
    + " FROM unnest($2::uuid[], $3::int[], $4::int[]) AS v(id, attempt, http_status) "
    "WHERE d.id = v.id AND v.id IN (SELECT delivery_id FROM done)) "
    f"INSERT INTO webhook_logs ({', '.join(LOG_COLUMNS)}) "
    "SELECT l.id, l.webhook_id, l.delivery_id, l.event_id, l.account_id, l.event, l.url, "
    f"l.integration_id, l.http_status, l.attempt, l.duration_ms, '{Outcome.DELIVERED}', NULL, "
    "l.excerpt, "
    "NULL, $5, l.request_headers, l.response_headers FROM unnest($6::uuid[], $7::uuid[], "
    "$2::uuid[], $8::uuid[], $9::uuid[], $10::varchar[], $11::varchar[], $12::int[], "
    "$4::int[], $3::int[], $13::float8[], $14::text[], $15::text[], $16::text[]) "
    "AS l(id, webhook_id, delivery_id, event_id, account_id, event, url, integration_id, "
    "http_status, attempt, duration_ms, excerpt, request_headers, response_headers)"
)
# SQLite takes a batch as three prepared statements run once per row (``executemany`` binds
# in C): the general path's delivery update, guarded by the lease, a delete of the queue rows
# and the log insert. (SQLite 3.40 re-parses a JSON value on every ``json_extract``: set-based
# statements over JSON arrays cost 16 parses per delivery, more than the rows' own writes.)
# The guard and the delete read ?5 (delivery id) and ?6 (owner) of the update's row of values.
_MARK_DELIVERED_SQLITE = (
    UPDATE_DELIVERIES_SQLITE
    + " AND EXISTS (SELECT 1 FROM delivery_queue WHERE delivery_id = ?5 AND lease_owner = ?6)"
)
_DELETE_LEASED_SQLITE = "DELETE FROM delivery_queue WHERE delivery_id = ?5 AND lease_owner = ?6"
# Not the general path's log insert: the constant columns are written in the statement,
# because binding them for every row cost 1.6 % of the worker's instructions (callgrind).
_LOG_SQLITE = (
    f"INSERT INTO webhook_logs ({', '.join(LOG_COLUMNS)}) VALUES ("
    + ", ".join("?" * 11)
    + f", '{Outcome.DELIVERED}', NULL, ?, NULL, ?, ?, ?)"
)


# Bound once per row: the member's value, an exact ``str``, which sqlite3 binds without looking
# for an adapter as it does for a ``str`` subclass.
_DELIVERED = DeliveryStatus.DELIVERED.value


class QueueLink(Protocol):
    async def claim(
        self,
        *,
        owner: str,
        now: datetime,
        lease_until: datetime,
        limit: int,
        per_webhook: int | None = None,
        shares: Mapping[uuid.UUID, int] | None = None,
        rated: RatedClaim | None = None,
    ) -> list[ClaimedDelivery]:
        """Lease up to ``limit`` due deliveries with what sending needs, fairly: at most
        ``shares[webhook]`` (else ``per_webhook``, else ``limit``) of each webhook, oldest
        first, dealt in turns across webhooks. ``rated``'s webhooks are taken first, through
        their rate windows (:mod:`hookline.store.rate_windows`), and by nothing else."""
        ...

    async def record_delivered(
        self, *, owner: str, now: datetime, records: Sequence[AttemptRecord]
    ) -> None:
        """Write a batch of successful attempts (outcome ``delivered``) as one unit."""
        ...

    async def close(self) -> None: ...


def open_queue_link(db: Database) -> QueueLink:
    """A link for ``db``'s backend; it connects on first use and again after a failure."""
    if db.is_sqlite:
        path = make_url(db.url).database
        if not path or path == ":memory:":
            raise ValueError("the delivery worker needs a SQLite database file")
        return SQLiteQueueLink(db, path)
    return PostgresQueueLink(db)


def _check_delivered(records: Sequence[AttemptRecord]) -> None:
    delivered = Outcome.DELIVERED
    if any(item.outcome != delivered for item in records):
        raise ValueError("record_delivered() takes successful attempts only")


class PostgresQueueLink:
    def __init__(self, db: Database) -> None:
        self._dsn = plain_postgres_url(db.url)
        # jit off: the claim's per-webhook LIMIT is unknown to the planner, whose estimate
        # then crossed the JIT threshold and spent 40 ms compiling a 3 ms statement.
        settings = {
            "synchronous_commit": "off",
            "application_name": "hookline-worker",
            "jit": "off",
        }
        if db.schema:
            settings["search_path"] = db.schema
        self._settings = settings
        self._conn: asyncpg.Connection | None = None

    async def _connection(self) -> asyncpg.Connection:
        if self._conn is None or self._conn.is_closed():
            self._conn = await asyncpg.connect(
                self._dsn, timeout=10, server_settings=self._settings
            )
        return self._conn

    async def _run(self, call: Callable[[asyncpg.Connection], Any]) -> Any:
        conn = await self._connection()
        try:
            return await call(conn)
        except (OSError, asyncpg.InterfaceError, asyncpg.PostgresConnectionError):
            await self.close()  # the next call reconnects
            raise

    async def claim(
        self,
        *,
        owner: str,
        now: datetime,
        lease_until: datetime,
        limit: int,
        per_webhook: int | None = None,
        shares: Mapping[uuid.UUID, int] | None = None,
        rated: RatedClaim | None = None,
    ) -> list[ClaimedDelivery]:
        default = limit if per_webhook is None else per_webhook
        first: list[ClaimedDelivery] = []
        if rated is not None:
            first = await self._claim_rated(rated, owner, now, lease_until, limit)
            shares = _held_back(shares, rated)
            limit -= len(first)
            if limit <= 0:
                return first
        ids, ks = (list(shares), list(shares.values())) if shares else ([], [])
        rows = await self._run(
            lambda conn: conn.fetch(
                _CLAIM_POSTGRESQL, now, limit, lease_until, owner, default, ids, ks
            )
        )
        return first + _claimed_postgresql(rows)

    async def _claim_rated(
        self, rated: RatedClaim, owner: str, now: datetime, lease_until: datetime, limit: int
    ) -> list[ClaimedDelivery]:
        rows = await self._run(
            lambda conn: rate_windows.claim_postgresql(
                conn,
                _CLAIM_RATED_POSTGRESQL,
                rated,
                now=now,
                lease_until=lease_until,
                owner=owner,
                limit=limit,
            )
        )
        return _claimed_postgresql(rows)

    async def record_delivered(
        self, *, owner: str, now: datetime, records: Sequence[AttemptRecord]
    ) -> None:
        _check_delivered(records)
        if not records:
            return
        items = [item.delivery for item in records]
        params = (
            owner,
            [d.delivery_id for d in items],
            [d.attempt for d in items],
            [item.http_status for item in records],
            now,
            [new_id_text() for _ in items],
            [d.webhook_id for d in items],
            [d.event_id for d in items],
            [d.account_id for d in items],
            [d.event_type for d in items],
            [d.url or "" for d in items],
            [d.integration_id for d in items],
            [round(item.duration_ms, 3) for item in records],
            [item.response_excerpt for item in records],
            [item.request_headers for item in records],
            [item.response_headers for item in records],
        )
        await self._run(lambda conn: conn.execute(_DELIVERED_POSTGRESQL, *params))

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and not conn.is_closed():
            try:
                await asyncio.wait_for(conn.close(), timeout=5)
            except Exception:
                conn.terminate()


class SQLiteQueueLink:
    """Units run on the event loop's thread (:mod:`hookline.store.sqlite_inline`) after
    taking the database's in-process writer turn, with priority over API writes, so a burst
    of events cannot starve the sending of them."""

    def __init__(self, db: Database, path: str) -> None:
        self._db = db
        self._sqlite = InlineSQLite(path)
        self._last_lease = datetime.min.replace(tzinfo=UTC)

    async def _unit(self, fn: Callable[..., T], *args: Any) -> T:
        async with self._db.writer_turn(priority=True):
            return await self._sqlite.transaction(fn, *args)

    async def claim(
        self,
        *,
        owner: str,
        now: datetime,
        lease_until: datetime,
        limit: int,
        per_webhook: int | None = None,
        shares: Mapping[uuid.UUID, int] | None = None,
        rated: RatedClaim | None = None,
    ) -> list[ClaimedDelivery]:
        if lease_until <= self._last_lease:  # two claims in one clock tick: tell them apart
            lease_until = self._last_lease + timedelta(microseconds=1)
        self._last_lease = lease_until
        lease = sqlite_time(lease_until)
        default = limit if per_webhook is None else per_webhook
        if rated is not None:
            shares = _held_back(shares, rated)
        rows = await self._unit(
            _claim_sqlite_rows,
            _Claim(lease, owner, sqlite_time(now), limit, default, _hex_shares(shares), rated),
        )
        uid = uuid_from_hex
        shared: dict[str, uuid.UUID] = {}  # a batch has few distinct webhooks and accounts

        def same(value: str) -> uuid.UUID:
            parsed = shared.get(value)
            if parsed is None:
                parsed = shared[value] = uid(value)
            return parsed

        # Rows are unpacked by name (the columns of _CLAIMED_COLUMNS), as fast as by index.
        return [
            ClaimedDelivery(
                uid(delivery_id),
                same(webhook_id),
                uid(event_id),
                attempt,
                same(account_id),
                event_type,
                bytes(payload),
                url,
                secret_encrypted,
                webhook_status,
                integration_id,
                None if failing_since is None else sqlite_datetime(failing_since),
                rate_limit,
                ordering,
            )
            for (
                delivery_id,
                webhook_id,
                event_id,
                attempt,
                account_id,
                event_type,
                payload,
                url,
                secret_encrypted,
                webhook_status,
                integration_id,
                failing_since,
                rate_limit,
                ordering,
            ) in rows
        ]

    async def record_delivered(
        self, *, owner: str, now: datetime, records: Sequence[AttemptRecord]
    ) -> None:
        _check_delivered(records)
        if not records:
            return
        marks: list[tuple[Any, ...]] = []
        logs: list[tuple[Any, ...]] = []
        stamp = sqlite_time(now)
        for item in records:
            d = item.delivery
            delivery_id = d.delivery_id.hex
            marks.append((_DELIVERED, d.attempt, item.http_status, stamp, delivery_id, owner))
            logs.append(
                (
                    new_id_text(),
                    d.webhook_id.hex,
                    delivery_id,
                    d.event_id.hex,
                    d.account_id.hex,
                    d.event_type,
                    d.url or "",
                    d.integration_id,
                    item.http_status or 0,
                    d.attempt,
                    round(item.duration_ms, 3),
                    item.response_excerpt,
                    stamp,
                    item.request_headers,
                    item.response_headers,
                )
            )
        await self._unit(_record_delivered_rows, marks, logs)

    async def close(self) -> None:
        self._sqlite.close()


def _claimed_postgresql(rows: Sequence[Sequence[Any]]) -> list[ClaimedDelivery]:
    """Claimed rows as asyncpg returns them (its types are already ours). The statement
    selects ``_CLAIMED_COLUMNS``, whose names are ``ClaimedDelivery``'s fields in order
    (checked at import), so a row is the value field by field."""
    return [ClaimedDelivery(*row) for row in rows]


class _Claim(NamedTuple):
    lease: str
    owner: str
    now: str
    limit: int
    per_webhook: int
    shares: dict[str, int]  # by webhook id as stored (32 hex characters)
    rated: RatedClaim | None = None


def _held_back(shares: Mapping[uuid.UUID, int] | None, rated: RatedClaim) -> dict[uuid.UUID, int]:
    """``shares`` with nothing for the rate-limited webhooks: only their windows take them."""
    return {**(shares or {}), **dict.fromkeys(rated.shares, 0)}


def _hex_shares(shares: Mapping[uuid.UUID, int] | None) -> dict[str, int]:
    return {hook.hex: k for hook, k in shares.items()} if shares else {}


def _claim_sqlite_rows(db: sqlite3.Connection, claim: _Claim) -> list[Any]:
    limit = claim.limit
    rated: list[str] = []  # rows of rate-limited webhooks, their tokens already spent
    if claim.rated is not None:
        rated = [d for _, _, d in rate_windows.pick_sqlite(db, claim.rated, claim.now, limit)]
        db.executemany(_LEASE_ONE_SQLITE, [(claim.lease, claim.owner, d) for d in rated])
        limit -= len(rated)
    shares = claim.shares
    wanted: dict[str, int] = {}  # webhook -> rows it may take
    for (hook,) in db.execute(_HOOKS_SQLITE).fetchall() if limit > 0 else ():
        take = min(limit, shares.get(hook, claim.per_webhook))
        if take > 0:
            wanted[hook] = take
    if len(wanted) > 1:  # turns across webhooks need to know what each one has due
        due = {
            hook: db.execute(_DUE_COUNT_SQLITE, (hook, claim.now, take)).fetchone()[0]
            for hook, take in wanted.items()
        }
        wanted = deal_turns(due, limit)
    leased = len(rated)
    for hook, take in wanted.items():
        if take > 0:
            leased += db.execute(
                _LEASE_SQLITE, (hook, claim.now, take, claim.lease, claim.owner)
            ).rowcount
    if not leased:
        return []
    hooks = [hook for hook, take in wanted.items() if take > 0]
    if rated and claim.rated is not None:
        hooks += [hook.hex for hook in claim.rated.shares]
    listed = '["' + '","'.join(hooks) + '"]'  # 32-hex ids: nothing to escape
    return db.execute(_CLAIMED_SQLITE, (listed, claim.lease, claim.owner)).fetchall()


def deal_turns(due: Mapping[str, int], limit: int) -> dict[str, int]:
    """How many rows each webhook gets when ``limit`` rows are dealt in turns (every
    webhook's first row, then every second row, ...) from ``due`` rows per webhook."""
    if sum(due.values()) <= limit:
        return dict(due)
    taken = dict.fromkeys(due, 0)
    left = limit
    while left > 0:
        open_hooks = [hook for hook, n in due.items() if taken[hook] < n]
        rounds = min(left // len(open_hooks), min(due[h] - taken[h] for h in open_hooks))
        if rounds == 0:  # the last, partial turn
            for hook in open_hooks[:left]:
                taken[hook] += 1
            break
        for hook in open_hooks:
            taken[hook] += rounds
        left -= rounds * len(open_hooks)
    return taken


def _record_delivered_rows(
    db: sqlite3.Connection, marks: list[tuple[Any, ...]], logs: list[tuple[Any, ...]]
) -> None:
    # Deliveries first: the update reads which queue rows this worker still leases.
    db.executemany(_MARK_DELIVERED_SQLITE, marks)
    db.executemany(_DELETE_LEASED_SQLITE, marks)
    db.executemany(_LOG_SQLITE, logs)
