"""Rate limits per webhook, shared by every worker: one token window per limited webhook.

A webhook with ``rate_limit_per_second`` is not claimed by the fair claim (the worker gives
it a share of 0 there) but by :func:`claim_postgresql` / :func:`pick_sqlite`, which per
limited webhook, in one unit:

1. locks its row of ``webhook_rate_windows`` (PostgreSQL: ``FOR UPDATE``, in webhook order,
   so two claims wait for each other and never deadlock; SQLite: the claim's write lock);
2. counts the tokens earned since (GCRA): one every ``1/rate`` seconds from ``next_free_at``,
   at most :func:`burst` saved while idle; at most its share (its destination's room);
3. takes that many of its oldest due rows (``FOR UPDATE SKIP LOCKED``; ordered streams
   respected: :func:`hookline.store.ordering.head_only`) and leases them, counting the
   attempt as the fair claim does;
4. moves ``next_free_at`` by exactly the number of rows taken.

So workers in any number of processes together claim at most ``rate * t + burst`` rows of
the webhook in any ``t`` seconds, and a token is spent only by a row actually claimed:
nothing is reserved and left unused, nothing needs giving back. Rows over the limit simply
stay due in the queue (their attempt is not counted). The answer tells the worker, per
webhook, what it was granted and took and where its window now stands, from which it knows
when to claim again (:mod:`hookline.delivery.rate_limits`).

Times in the window are Unix seconds (``float``): the same arithmetic in SQL and Python.
"""

from __future__ import annotations

import math
import sqlite3
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple

from hookline.store.ordering import head_only

#: Tokens a webhook may save while idle, in seconds of its rate (at least one token): the
#: burst it may send at once after a quiet spell, and the slack a worker's wake-up has.
BURST_SECONDS = 0.2
#: Tokens counted in excess against rounding: ``(now - start) * rate`` lands a hair under a
#: whole number when ``start`` was itself computed back from ``now``.
_ROUNDING = 1e-6


def burst(rate: float) -> int:
    """How many tokens a webhook limited to ``rate`` per second may save."""
    return max(1, math.ceil(rate * BURST_SECONDS))


def tokens(next_free_at: float, rate: float | None, share: int, now: float) -> tuple[float, int]:
    """``(start, granted)``: where the window stands before this claim and how many rows it
    may take now (at most ``share``). ``rate`` None: no limit any more, the share alone."""
    if rate is None:
        return next_free_at, share
    start = max(next_free_at, now - (burst(rate) - 1) / rate)
    if start > now:
        return start, 0
    return start, min(share, int((now - start) * rate + _ROUNDING) + 1)


class Window(NamedTuple):
    """One limited webhook after a claim."""

    webhook_id: uuid.UUID
    rate: float | None  # None: the webhook is no longer limited
    granted: int  # rows it could take (tokens, capped by its share)
    taken: int
    next_free_at: float  # Unix seconds: when its next token is earned


@dataclass(slots=True)
class RatedClaim:
    """The limited webhooks a claim takes through their windows, and what it found."""

    shares: dict[uuid.UUID, int]  # webhook -> most rows it may take (its destination's room)
    now: float  # Unix seconds of the claim's ``now``
    new: list[uuid.UUID] = field(default_factory=list)  # windows that may not exist yet
    windows: list[Window] = field(default_factory=list)  # filled by the claim


# One statement per claim (see the module's docstring). ``tok`` is computed from the locked
# window rows, so each webhook's rows are picked after its lock is held; a claim that waited
# for the lock reads the window as the other claim left it (READ COMMITTED re-reads a locked
# row), and rows that claim leased fail ``available_at <= $1`` when re-checked.
_CLAIM_POSTGRESQL = (
    "WITH l AS (SELECT * FROM unnest($5::uuid[], $6::int[]) AS l(webhook_id, share)), "
    "win AS (SELECT r.webhook_id, r.next_free_at, h.rate_limit_per_second AS rate, l.share "
    "FROM webhook_rate_windows r JOIN l ON l.webhook_id = r.webhook_id "
    "JOIN webhooks h ON h.id = r.webhook_id ORDER BY r.webhook_id FOR UPDATE OF r), "
    "tok AS (SELECT win.webhook_id, win.rate, s.start, CASE WHEN win.rate IS NULL "
    "THEN win.share WHEN s.start > $2 THEN 0 "
    f"ELSE least(win.share, floor(($2 - s.start) * win.rate + {_ROUNDING})::int + 1) END AS n "
    "FROM win CROSS JOIN LATERAL (SELECT CASE WHEN win.rate IS NULL THEN win.next_free_at "
    f"ELSE greatest(win.next_free_at, $2 - (greatest(1, ceil(win.rate * {BURST_SECONDS})) - 1) "
    "/ win.rate) END AS start) s), "
    "p AS (SELECT s.delivery_id FROM tok CROSS JOIN LATERAL ("
    "SELECT d.delivery_id FROM delivery_queue d WHERE d.webhook_id = tok.webhook_id "
    f"AND d.available_at <= $1 AND {head_only('d')} "
    "ORDER BY d.webhook_id, d.available_at LIMIT tok.n FOR UPDATE SKIP LOCKED) s LIMIT $7), "
    "claimed AS (UPDATE delivery_queue q SET available_at = $3, lease_owner = $4, "
    "attempt = q.attempt + 1 WHERE q.delivery_id = ANY(ARRAY(SELECT delivery_id FROM p)) "
    "RETURNING q.delivery_id, q.webhook_id, q.event_id, q.attempt), "
    "took AS (SELECT webhook_id, count(*)::int AS taken FROM claimed GROUP BY webhook_id), "
    "spent AS (UPDATE webhook_rate_windows r SET next_free_at = tok.start + took.taken / tok.rate "
    "FROM tok JOIN took ON took.webhook_id = tok.webhook_id "
    "WHERE r.webhook_id = tok.webhook_id AND tok.rate IS NOT NULL "
    "RETURNING r.webhook_id, r.next_free_at) "
    "SELECT tok.webhook_id, tok.rate, tok.n, coalesce(took.taken, 0), "
    "coalesce(spent.next_free_at, tok.start), x.* FROM tok "
    "LEFT JOIN took ON took.webhook_id = tok.webhook_id "
    "LEFT JOIN spent ON spent.webhook_id = tok.webhook_id "
    "LEFT JOIN ({details}) x ON x.webhook_id = tok.webhook_id"
)
_ENSURE_POSTGRESQL = (
    "INSERT INTO webhook_rate_windows (webhook_id, next_free_at) "
    "SELECT unnest($1::uuid[]), 0 ON CONFLICT DO NOTHING"
)


def claim_statement(details: str) -> str:
    """The PostgreSQL claim, answering per limited webhook ``(webhook, rate, granted, taken,
    next_free_at)`` followed by ``details``' columns of each row it claimed (NULLs when it
    claimed none). ``details`` selects from a relation named ``claimed``."""
    return _CLAIM_POSTGRESQL.format(details=details)


async def claim_postgresql(
    conn: Any,
    statement: str,
    rated: RatedClaim,
    *,
    now: datetime,
    lease_until: datetime,
    owner: str,
    limit: int,
) -> list[Sequence[Any]]:
    """Run the claim on an asyncpg connection (autocommit); fills ``rated.windows`` and
    returns the claimed rows' details."""
    if rated.new:
        await conn.execute(_ENSURE_POSTGRESQL, rated.new)
        rated.new = []
    rows = await conn.fetch(
        statement,
        now,
        rated.now,
        lease_until,
        owner,
        list(rated.shares),
        list(rated.shares.values()),
        limit,
    )
    seen: set[uuid.UUID] = set()
    claimed: list[Sequence[Any]] = []
    for hook, rate, granted, taken, next_free_at, *details in rows:
        if hook not in seen:
            seen.add(hook)
            rated.windows.append(Window(_uuid(hook), rate, granted, taken, next_free_at))
        if details[0] is not None:  # the delivery's id: the window's webhook had one due
            claimed.append(details)
    return claimed


# SQLite: the same steps inside the claim's ``BEGIN IMMEDIATE`` (one process, nothing to lock
# or skip), on the event loop's thread.
_DUE_SQLITE = (
    "SELECT d.delivery_id, d.available_at FROM delivery_queue d WHERE d.webhook_id = ? "
    f"AND d.available_at <= ? AND {head_only('d')} "
    "ORDER BY d.webhook_id, d.available_at LIMIT ?"
)
_WINDOW_SQLITE = (
    "SELECT r.next_free_at, h.rate_limit_per_second FROM webhook_rate_windows r "
    "JOIN webhooks h ON h.id = r.webhook_id WHERE r.webhook_id = ?"
)
_SPEND_SQLITE = "UPDATE webhook_rate_windows SET next_free_at = ? WHERE webhook_id = ?"
_ENSURE_SQLITE = (
    "INSERT INTO webhook_rate_windows (webhook_id, next_free_at) VALUES (?, 0) "
    "ON CONFLICT DO NOTHING"
)


def pick_sqlite(
    db: sqlite3.Connection, rated: RatedClaim, now: str, limit: int
) -> list[tuple[int, str, str]]:
    """Take the limited webhooks' rows (``now`` as stored), spend their tokens and fill
    ``rated.windows``; returns ``(turn, available_at, delivery id)`` with turn -1, so the
    fair claim's cut to ``limit`` never drops a row whose token was spent."""
    if rated.new:
        db.executemany(_ENSURE_SQLITE, [(hook.hex,) for hook in rated.new])
        rated.new = []
    picked: list[tuple[int, str, str]] = []
    for hook, share in rated.shares.items():
        found = db.execute(_WINDOW_SQLITE, (hook.hex,)).fetchone()
        if found is None:  # the webhook is gone (or its window is): not limited any more
            continue
        next_free_at, rate = found
        start, granted = tokens(next_free_at, rate, share, rated.now)
        room = min(granted, limit - len(picked))
        rows = db.execute(_DUE_SQLITE, (hook.hex, now, room)).fetchall() if room > 0 else []
        if rate is not None and rows:
            next_free_at = start + len(rows) / rate
            db.execute(_SPEND_SQLITE, (next_free_at, hook.hex))
        elif rate is not None:
            next_free_at = start
        rated.windows.append(Window(hook, rate, granted, len(rows), next_free_at))
        picked.extend((-1, at, delivery_id) for delivery_id, at in rows)
    return picked


def _uuid(value: Any) -> uuid.UUID:
    """asyncpg's own UUID type as ``uuid.UUID``."""
    return value if type(value) is uuid.UUID else uuid.UUID(bytes=value.bytes)
