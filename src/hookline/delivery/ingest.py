"""Events sent by producers outside hookline (``POST /events``), emitted exactly once per
idempotency key.

The request body is the event's flat body without ``accountid`` and ``created`` (hookline
fills both). With an idempotency key, a repeat returns the first result and delivers nothing
again; two identical requests racing each other meet on the unique
``(account_id, idempotency_key)`` index, and the loser answers with the winner's result.
"""

from __future__ import annotations

import contextlib
import json
import re
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from hookline.catalog import BY_NAME, InvalidEventBody, UnknownEventType, get_event_type
from hookline.delivery.emit import build_body, emit, prepare_event
from hookline.errors import Conflict, InvalidRequest
from hookline.ids import new_id
from hookline.store.event_batch import EventRow, ExistingEvent, Written
from hookline.store.tables import deliveries, events
from hookline.tracing import write_traceparent

MAX_IDEMPOTENCY_KEY = 200
SERVER_FIELDS = ("accountid", "created")
INT32 = (-(2**31), 2**31 - 1)  # integration ids are 32-bit integer columns
BATCH_KEY_FIELD = "requestid"  # an item's idempotency key in POST /events/batch
_FIELD_PROBLEM = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\[\]]*: ")


@dataclass(frozen=True)
class IngestedEvent:
    id: uuid.UUID
    body: dict[str, Any]
    deliveries: int  # deliveries queued for it (one per matching active webhook)
    replayed: bool  # True when an earlier request with the same key produced this result


def split_request(data: Any) -> tuple[str, uuid.UUID | None, dict[str, Any]]:
    """``(event, consumer_id, extra fields)`` from a request body, with 400s for mistakes."""
    if not isinstance(data, dict):
        raise InvalidRequest("The body must be a JSON object", error_code="ERROR_INVALID_BODY")
    fields = dict(data)
    event = fields.pop("event", None)
    if not isinstance(event, str) or not event:
        raise InvalidRequest(
            "The body needs an event", detail="event: required", error_code="ERROR_INVALID_BODY"
        )
    if event not in BY_NAME:
        raise InvalidRequest(
            f"Unknown event {event!r}",
            detail="See GET /webhooks/list for the known events",
            error_code="ERROR_UNKNOWN_EVENT",
        )
    given = [name for name in SERVER_FIELDS if name in fields]
    if given:
        raise InvalidRequest(
            f"{' and '.join(given)} are set by hookline and cannot be sent",
            detail=", ".join(given),
            error_code="ERROR_INVALID_BODY",
        )
    raw_consumer = fields.pop("consumerid", None)
    consumer_id: uuid.UUID | None = None
    if raw_consumer is not None:
        try:
            consumer_id = uuid.UUID(str(raw_consumer)) if isinstance(raw_consumer, str) else None
        except ValueError:
            consumer_id = None
        if consumer_id is None:
            raise InvalidRequest(
                "Invalid event body",
                detail="consumerid: not a uuid",
                error_code="ERROR_INVALID_BODY",
            )
    return event, consumer_id, fields


async def ingest_event(
    conn: AsyncConnection,
    *,
    account_id: uuid.UUID,
    event: str,
    consumer_id: uuid.UUID | None,
    fields: dict[str, Any],
    now: datetime,
    integration_id: int | None = None,
    idempotency_key: str | None = None,
) -> IngestedEvent:
    """Validate against the catalog, store and fan out one event in ``conn``'s transaction.

    ``integration_id`` (already checked by the caller against the connector catalog) scopes
    POS events to the webhooks of that integration. A schema mismatch is a 400 whose detail
    lists every problem. Reusing a key with a different event answers 409.
    """
    if idempotency_key is not None:
        _check_key(idempotency_key)
        earlier = await _find_existing(conn, account_id, idempotency_key)
        if earlier is not None:
            return _same_or_conflict(
                earlier, account_id, event, consumer_id, fields, integration_id
            )
    # No savepoint around this: a lost race on the unique key fails the whole transaction
    # with IntegrityError, and the caller answers with :func:`replay_after_race`. That keeps
    # the common path at the fewest database round trips.
    with _as_bad_request(event):
        emitted = await emit(
            conn,
            account_id=account_id,
            event=event,
            consumer_id=consumer_id,
            fields=fields,
            now=now,
            integration_id=integration_id,
            idempotency_key=idempotency_key,
        )
    return IngestedEvent(emitted.id, emitted.body, len(emitted.delivery_ids), replayed=False)


class EventWriter(Protocol):
    async def write(self, row: EventRow) -> Written: ...

    async def write_batch(
        self, rows: Sequence[EventRow], check: Callable[[list[Written]], None]
    ) -> list[Written]: ...


async def ingest_event_fast(
    writer: EventWriter,
    *,
    account_id: uuid.UUID,
    event: str,
    consumer_id: uuid.UUID | None,
    fields: dict[str, Any],
    now: datetime,
    integration_id: int | None = None,
    idempotency_key: str | None = None,
) -> IngestedEvent:
    """:func:`ingest_event` through the database's standalone-event writer (the event is its
    own state change: see :meth:`hookline.store.db.Database.event_writer`): a group commit
    with the events that arrive at the same time."""
    if idempotency_key is not None:
        _check_key(idempotency_key)
    with _as_bad_request(event):
        body, payload = prepare_event(
            account_id=account_id, event=event, consumer_id=consumer_id, fields=fields, now=now
        )
    event_id = new_id()
    written = await writer.write(
        EventRow(
            event_id,
            account_id,
            event,
            consumer_id,
            integration_id,
            payload,
            idempotency_key,
            now,
            get_event_type(event).api == "POS",
            write_traceparent(),
        )
    )
    if written.existing is not None:
        return _replay(written.existing, account_id, event, consumer_id, fields, integration_id)
    return IngestedEvent(event_id, body, len(written.delivery_ids), replayed=False)


def _check_key(key: str) -> None:
    if not key or len(key) > MAX_IDEMPOTENCY_KEY:
        raise InvalidRequest(
            f"The idempotency key must have 1 to {MAX_IDEMPOTENCY_KEY} characters",
            error_code="ERROR_INVALID_IDEMPOTENCY_KEY",
        )


@contextlib.contextmanager
def _as_bad_request(event: str) -> Iterator[None]:
    """Catalog errors (raised before anything is written) as the contract's 400s."""
    try:
        yield
    except UnknownEventType:
        raise InvalidRequest(f"Unknown event {event!r}", error_code="ERROR_UNKNOWN_EVENT") from None
    except InvalidEventBody as error:
        raise InvalidRequest(
            "Invalid event body", detail="; ".join(error.errors), error_code="ERROR_INVALID_BODY"
        ) from None


async def replay_after_race(
    conn: AsyncConnection,
    *,
    account_id: uuid.UUID,
    event: str,
    consumer_id: uuid.UUID | None,
    fields: dict[str, Any],
    integration_id: int | None,
    idempotency_key: str,
) -> IngestedEvent | None:
    """After an IntegrityError: the result of the concurrent request that won the key."""
    earlier = await _find_existing(conn, account_id, idempotency_key)
    if earlier is None:
        return None
    return _same_or_conflict(earlier, account_id, event, consumer_id, fields, integration_id)


@dataclass(frozen=True)
class _Stored:
    result: IngestedEvent
    integration_id: int | None


async def _find_existing(conn: AsyncConnection, account_id: uuid.UUID, key: str) -> _Stored | None:
    row = (
        await conn.execute(
            select(events.c.id, events.c.payload, events.c.integration_id).where(
                events.c.account_id == account_id, events.c.idempotency_key == key
            )
        )
    ).first()
    if row is None:
        return None
    count = (
        await conn.execute(
            select(func.count()).select_from(deliveries).where(deliveries.c.event_id == row.id)
        )
    ).scalar_one()
    body = json.loads(bytes(row.payload))
    return _Stored(IngestedEvent(row.id, body, count, replayed=True), row.integration_id)


def _same_or_conflict(
    earlier: _Stored,
    account_id: uuid.UUID,
    event: str,
    consumer_id: uuid.UUID | None,
    fields: dict[str, Any],
    integration_id: int | None,
) -> IngestedEvent:
    """The first result, unless the key now comes with a different event (a client bug)."""
    stored = earlier.result.body
    try:
        candidate = build_body(
            account_id=account_id,
            event=event,
            consumer_id=consumer_id,
            created=stored.get("created", 0),
            fields=fields,
        )
    except UnknownEventType:
        candidate = None
    # Compare as JSON, as stored: a uuid given as a string and its parsed form are equal.
    if (
        json.loads(json.dumps(candidate, default=str)) != stored
        or earlier.integration_id != integration_id
    ):
        raise Conflict(
            "This x-chift-client-requestid was already used for a different event",
            detail=f"first event: {earlier.result.id}",
            error_code="ERROR_IDEMPOTENCY_CONFLICT",
        )
    return earlier.result


@dataclass(frozen=True, slots=True)
class BatchItem:
    """One validated item of ``POST /events/batch``, ready to be written."""

    index: int  # its position in the request
    row: EventRow
    body: dict[str, Any]
    consumer_id: uuid.UUID | None
    fields: dict[str, Any]

    @property
    def event(self) -> str:
        return self.row.event

    @property
    def integration_id(self) -> int | None:
        return self.row.integration_id


def item_problem(index: int, problem: str) -> str:
    """``events[17].status: ...`` for a field's problem, ``events[17]: ...`` otherwise."""
    if problem.startswith("body: "):
        return f"events[{index}]: {problem.removeprefix('body: ')}"
    if _FIELD_PROBLEM.match(problem):
        return f"events[{index}].{problem}"
    return f"events[{index}]: {problem}"


def prepare_batch(
    items: Sequence[Any], *, account_id: uuid.UUID, now: datetime, max_event_bytes: int
) -> tuple[list[BatchItem], list[str]]:
    """Validate every item (nothing is written): the ready items, and every problem of every
    bad item, each named by its index. Integrations are the caller's to check."""
    ready: list[BatchItem] = []
    problems: list[str] = []
    for index, data in enumerate(items):
        found = _prepare_item(data, index, account_id=account_id, now=now, limit=max_event_bytes)
        if isinstance(found, BatchItem):
            ready.append(found)
        else:
            problems.extend(item_problem(index, problem) for problem in found)
    return ready, problems


def _prepare_item(
    data: Any, index: int, *, account_id: uuid.UUID, now: datetime, limit: int
) -> BatchItem | list[str]:
    if not isinstance(data, dict):
        return ["not a JSON object"]
    data = dict(data)
    problems: list[str] = []
    key = data.pop(BATCH_KEY_FIELD, None)
    if key is not None and not _storable_key(key):
        problems.append(
            f"{BATCH_KEY_FIELD}: must be a string of 1 to {MAX_IDEMPOTENCY_KEY} characters"
        )
    integration_id = data.pop("integrationid", None)
    if integration_id is not None and (
        not isinstance(integration_id, int) or isinstance(integration_id, bool)
    ):
        problems.append("integrationid: not an integer")
    elif integration_id is not None and not INT32[0] <= integration_id <= INT32[1]:
        problems.append("integrationid: out of range")
    try:
        event, consumer_id, fields = split_request(data)
    except InvalidRequest as error:
        return [*problems, _as_problem(error)]
    try:
        body, payload = prepare_event(
            account_id=account_id, event=event, consumer_id=consumer_id, fields=fields, now=now
        )
    except InvalidEventBody as error:
        return [*problems, *error.errors]
    if len(payload) > limit:
        problems.append(f"larger than {limit} bytes")
    if problems:
        return problems
    row = EventRow(
        new_id(),
        account_id,
        event,
        consumer_id,
        integration_id,
        payload,
        key,
        now,
        get_event_type(event).api == "POS",
        write_traceparent(),
    )
    return BatchItem(index, row, body, consumer_id, fields)


def _storable_key(key: Any) -> bool:
    """1 to 200 characters that a text column can hold (no NUL, no lone surrogate)."""
    if not isinstance(key, str) or not 0 < len(key) <= MAX_IDEMPOTENCY_KEY or "\x00" in key:
        return False
    try:
        key.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _as_problem(error: InvalidRequest) -> str:
    if error.error_code == "ERROR_UNKNOWN_EVENT":
        return f"event: {error.message}"
    if _FIELD_PROBLEM.match(error.detail):
        return error.detail
    return f"{error.detail}: {error.message}" if error.detail else error.message


async def ingest_batch(writer: EventWriter, items: Sequence[BatchItem]) -> list[IngestedEvent]:
    """Write every item and its deliveries in one transaction, results in item order. An
    item whose key was seen before (earlier, or earlier in this batch) answers its first
    event, ``replayed``; a key reused for another event fails the whole batch (409)."""

    def check(results: list[Written]) -> None:
        for index, (item, written) in enumerate(zip(items, results, strict=True)):
            if written.existing is not None:
                try:
                    _replayed(item, written.existing)
                except Conflict as error:
                    raise Conflict(
                        f"events[{index}].{BATCH_KEY_FIELD} was already used for a different event",
                        detail=f"events[{index}]: {error.detail}",
                        error_code=error.error_code,
                    ) from None

    results = await writer.write_batch([item.row for item in items], check)
    return [
        _replayed(item, written.existing)
        if written.existing is not None
        else IngestedEvent(item.row.event_id, item.body, len(written.delivery_ids), False)
        for item, written in zip(items, results, strict=True)
    ]


def _replayed(item: BatchItem, found: ExistingEvent) -> IngestedEvent:
    row = item.row
    return _replay(
        found, row.account_id, row.event, item.consumer_id, item.fields, row.integration_id
    )


def _replay(
    found: ExistingEvent,
    account_id: uuid.UUID,
    event: str,
    consumer_id: uuid.UUID | None,
    fields: dict[str, Any],
    integration_id: int | None,
) -> IngestedEvent:
    """The event a key already produced, unless the key now comes with another event."""
    earlier = _Stored(
        IngestedEvent(found.id, json.loads(found.payload), found.deliveries, replayed=True),
        found.integration_id,
    )
    return _same_or_conflict(earlier, account_id, event, consumer_id, fields, integration_id)
