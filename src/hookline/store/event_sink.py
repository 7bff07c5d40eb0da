"""The event sink: the one way events get into the database, with their fan-out (a delivery
and a queue row per matching active webhook) and their idempotency.

Three entries, one implementation per backend, chosen once when the
:class:`hookline.store.db.Database` is made (``Database.event_sink()``); callers see only
:class:`EventSink`:

- :meth:`EventSink.emit`: inside the caller's transaction (the transactional outbox: the
  event exists iff the state change that caused it committed). The platform's events and
  everything ``delivery.emit`` writes go here.
- :meth:`EventSink.accept`: an event that is its own state change (``POST /events``),
  committed when it returns; events that arrive together share one transaction (group
  commit), each with its own answer.
- :meth:`EventSink.accept_batch`: many such events in ONE transaction, all or nothing
  (``POST /events/batch``).

Idempotency is the sink's: an event whose ``(account, idempotency key)`` exists writes
nothing and answers the existing event (:class:`Written.existing`), also when two writers
race for the key; a key repeated within one call answers its first event. Callers never see
a driver exception for it (nor for any constraint: :mod:`hookline.store.errors`).

How each backend reaches the database on these hot paths, and why:

- **PostgreSQL** (:mod:`hookline.store.event_sink_pg`): ``accept`` and ``accept_batch`` use
  a plain asyncpg pool of their own, one fan-out statement over column arrays per group or
  batch (autocommitted for a group: one round trip). Through SQLAlchemy each statement paid
  its greenlet hand-offs and a transaction costs BEGIN and COMMIT round trips; here a group
  of a hundred events costs one round trip. ``emit`` runs the same statement through the
  caller's SQLAlchemy connection, because that is where the caller's transaction is.
- **SQLite** (:mod:`hookline.store.event_sink_sqlite`): ``accept`` and ``accept_batch`` run
  on the event loop's own thread with the stdlib driver (:mod:`hookline.store.sqlite_inline`):
  the statements of a whole group take less time than one hand-off to aiosqlite's thread,
  during which the single writer lock would be held. ``emit`` runs inside the caller's
  aiosqlite transaction, all its statements in one hand-off (``sqlite_call``).

The SQL itself (the webhook-matching condition shared by every path, the fan-out statements)
is in :mod:`hookline.store.outbox`.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple, Protocol, cast

from sqlalchemy.ext.asyncio import AsyncConnection

SINK_KEY = "hookline_event_sink"  # conn.info: the sink of a Database.transaction() connection


class EventRow(NamedTuple):
    """One event to store and fan out, ready for the database (validated, encoded).

    The values of the hot paths are named tuples: immutable like a frozen dataclass, made
    in a sixth of the time (a batch makes thousands).
    """

    event_id: uuid.UUID
    account_id: uuid.UUID
    event: str
    consumer_id: uuid.UUID | None
    integration_id: int | None
    payload: bytes
    idempotency_key: str | None
    now: datetime
    pos: bool  # a POS event reaches only the webhooks of its integration
    traceparent: str | None = None  # hookline.tracing: the write's span, when tracing is on


class ExistingEvent(NamedTuple):
    """The event an idempotency key already produced (nothing was written this time)."""

    id: uuid.UUID
    payload: bytes
    integration_id: int | None
    deliveries: int


class Written(NamedTuple):
    """What the sink did with one event: its deliveries, or the event its key had made."""

    delivery_ids: tuple[uuid.UUID, ...] = ()
    existing: ExistingEvent | None = None


Check = Callable[[list[Written]], None]


class EventSink(Protocol):
    async def emit(self, conn: AsyncConnection, row: EventRow) -> Written:
        """Store ``row`` and fan it out in ``conn``'s transaction (a
        ``Database.transaction()`` connection: workers are woken after its commit)."""
        ...

    async def accept(self, row: EventRow) -> Written:
        """Store ``row`` and fan it out in a transaction of its own (shared with the events
        that arrive meanwhile); committed when this returns."""
        ...

    async def accept_batch(self, rows: Sequence[EventRow], check: Check) -> list[Written]:
        """Store and fan out all ``rows`` in ONE transaction, all or nothing: ``check`` sees
        every result before the commit and raises to roll the whole batch back."""
        ...

    async def open(self) -> None:
        """Open connections ahead of the first events (a server's start-up)."""
        ...

    async def close(self) -> None: ...


def sink_of(conn: AsyncConnection) -> EventSink:
    """The sink of the database whose transaction ``conn`` is in."""
    sink = conn.info.get(SINK_KEY)
    if sink is None:
        raise RuntimeError("emitting an event needs a Database.transaction() connection")
    return cast(EventSink, sink)


@dataclass(frozen=True, slots=True)
class KeyPlan:
    """Which rows of one call to write: the first of each idempotency key (and every row
    without one), and for each repeat the row whose answer it shares."""

    unique: list[int]
    repeats: dict[int, int]
    keyed: bool  # some row has a key


def plan_keys(rows: Sequence[EventRow]) -> KeyPlan:
    first: dict[tuple[uuid.UUID, str], int] = {}
    unique: list[int] = []
    repeats: dict[int, int] = {}
    for index, row in enumerate(rows):
        key = row.idempotency_key
        if key is None:
            unique.append(index)
            continue
        seen = first.setdefault((row.account_id, key), index)
        if seen == index:
            unique.append(index)
        else:
            repeats[index] = seen
    return KeyPlan(unique, repeats, bool(first))


def as_repeat(first: EventRow, result: Written) -> Written:
    """What a row repeating ``first``'s key (in one call) answers: ``first``'s event."""
    if result.existing is not None:
        return result
    return Written(
        existing=ExistingEvent(
            first.event_id, first.payload, first.integration_id, len(result.delivery_ids)
        )
    )


def settle(
    futures: Sequence[asyncio.Future[Written]], results: Sequence[Written | BaseException]
) -> None:
    """Answer each request of a group commit with its own result or error (a request that
    gave up meanwhile is skipped)."""
    for future, result in zip(futures, results, strict=True):
        if future.done():
            continue
        if isinstance(result, BaseException):
            future.set_exception(result)
        else:
            future.set_result(result)
