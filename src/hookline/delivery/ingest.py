"""Events sent by producers outside hookline (``POST /events``, ``POST /events/batch``),
emitted exactly once per idempotency key.

The request body is the event's flat body without ``accountid`` and ``created`` (hookline
fills both). Each event is its own state change, so it goes to the event sink's own
transactions (:meth:`hookline.store.event_sink.EventSink.accept`, group-committed). With an
idempotency key, a repeat returns the first result and delivers nothing again; the sink
answers it even when two requests race for the key. A key reused for another event is 409.

A batch is validated whole first (every problem of every item, by index), then written in
one transaction. Its items take a fast path: one pass that builds each body, checks it with
its type's compiled predicate and encodes it; any item the fast path is unsure of is
prepared the general way, which words its problems exactly.
"""

from __future__ import annotations

import contextlib
import json
import re
import uuid
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any, NamedTuple

from hookline.catalog import BY_NAME, InvalidEventBody, UnknownEventType
from hookline.catalog.schemas import compiled_check, field_names
from hookline.delivery.emit import EventDraft, PreparedEvent, encode_body, prepare
from hookline.errors import Conflict, InvalidRequest
from hookline.ids import new_id, uuid_from_hex
from hookline.store.event_sink import EventRow, EventSink, ExistingEvent
from hookline.tracing import write_traceparent

MAX_IDEMPOTENCY_KEY = 200
SERVER_FIELDS = ("accountid", "created")
INT32 = (-(2**31), 2**31 - 1)  # integration ids are 32-bit integer columns
BATCH_KEY_FIELD = "requestid"  # an item's idempotency key in POST /events/batch
_FIELD_PROBLEM = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\[\]]*: ")
_CANONICAL_UUID = re.compile(
    r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\Z"
)
_POS_EVENTS = frozenset(name for name, event_type in BY_NAME.items() if event_type.api == "POS")


class IngestedEvent(NamedTuple):
    """What one accepted event answers (a named tuple: a batch makes a thousand)."""

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


async def ingest_event(sink: EventSink, draft: EventDraft) -> IngestedEvent:
    """Validate ``draft`` against the catalog, store and fan it out in a transaction of its
    own (shared with the events that arrive meanwhile); committed when this returns.

    ``integration_id`` (already checked by the caller against the connector catalog) scopes
    POS events to the webhooks of that integration. A schema mismatch is a 400 whose detail
    lists every problem. Reusing a key with a different event answers 409.
    """
    if draft.idempotency_key is not None:
        _check_key(draft.idempotency_key)
    with _as_bad_request(draft.event):
        prepared = prepare(draft)
    written = await sink.accept(prepared.row)
    if written.existing is not None:
        return _same_or_conflict(written.existing, prepared.body, draft.integration_id)
    return IngestedEvent(prepared.row.event_id, prepared.body, len(written.delivery_ids), False)


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


def _same_or_conflict(
    found: ExistingEvent, body: dict[str, Any], integration_id: int | None
) -> IngestedEvent:
    """The event a key already produced, unless the key now comes with a different event
    (a client bug): the same body but for its ``created``, and the same integration."""
    stored = json.loads(found.payload)
    # Compare as JSON, as stored: a uuid given as a string and its parsed form are equal.
    candidate = json.loads(json.dumps({**body, "created": stored.get("created", 0)}, default=str))
    if candidate != stored or found.integration_id != integration_id:
        raise Conflict(
            "This x-chift-client-requestid was already used for a different event",
            detail=f"first event: {found.id}",
            error_code="ERROR_IDEMPOTENCY_CONFLICT",
        )
    return IngestedEvent(found.id, stored, found.deliveries, replayed=True)


class BatchItem(NamedTuple):
    """One validated item of ``POST /events/batch``, ready to be written."""

    position: int  # its index in the request
    body: dict[str, Any]
    row: EventRow

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
    batch = _Batch(account_id, now, max_event_bytes)
    ready: list[BatchItem] = []
    problems: list[str] = []
    for index, data in enumerate(items):
        found: BatchItem | list[str] | None = batch.fast(data, index)
        if found is None:
            found = batch.general(data, index)
        if isinstance(found, BatchItem):
            ready.append(found)
        else:
            problems.extend(item_problem(index, problem) for problem in found)
    return ready, problems


class _Batch:
    """What the items of one batch share (the account, the moment, the limit), computed
    once, and the two ways to prepare an item."""

    def __init__(self, account_id: uuid.UUID, now: datetime, limit: int) -> None:
        self.account_id = account_id
        self.account_text = str(account_id)
        self.now = now
        self.created = int(now.timestamp())
        self.limit = limit
        self.traceparent = write_traceparent()  # one write span for the whole batch

    def fast(self, data: Any, index: int) -> BatchItem | None:
        """The common, valid item in one pass; ``None`` whenever anything is unusual (the
        general way then decides, and words the problems)."""
        if type(data) is not dict or "accountid" in data or "created" in data:
            return None
        event = data.get("event")
        if type(event) is not str or event not in BY_NAME:
            return None
        key = data.get(BATCH_KEY_FIELD)
        if key is not None and not _storable_key(key):
            return None
        integration_id = data.get("integrationid")
        if integration_id is not None and (
            type(integration_id) is not int or not INT32[0] <= integration_id <= INT32[1]
        ):
            return None
        consumer = data.get("consumerid")
        if type(consumer) is not str or _CANONICAL_UUID.match(consumer) is None:
            return None  # absent (the schema refuses it), or to be parsed the general way
        consumer_text = consumer.lower()
        names = field_names(event)
        body: dict[str, Any] = {
            "accountid": self.account_text,
            "event": event,
            "consumerid": consumer_text,
            "created": self.created,
        }
        present = 2  # event and consumerid
        if key is not None or BATCH_KEY_FIELD in data:
            present += 1
        if integration_id is not None or "integrationid" in data:
            present += 1
        for name in names:
            value = data.get(name)
            if value is not None or name in data:
                present += 1
            body[name] = value
        if len(data) != present:  # a field the type does not have
            return None
        if not compiled_check(event)(body):
            return None
        payload = encode_body(body)
        if len(payload) > self.limit:
            return None
        row = EventRow(
            new_id(),
            self.account_id,
            event,
            uuid_from_hex(consumer_text.replace("-", "")),
            integration_id,
            payload,
            key,
            self.now,
            event in _POS_EVENTS,
            self.traceparent,
        )
        return BatchItem(index, body, row)

    def general(self, data: Any, index: int) -> BatchItem | list[str]:
        """One item the exact way of ``POST /events``: the item, or all its problems."""
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
        draft = EventDraft(
            account_id=self.account_id,
            event=event,
            consumer_id=consumer_id,
            fields=fields,
            now=self.now,
            integration_id=integration_id,
            idempotency_key=key,
        )
        try:
            prepared: PreparedEvent = prepare(draft)
        except InvalidEventBody as error:
            return [*problems, *error.errors]
        if len(prepared.row.payload) > self.limit:
            problems.append(f"larger than {self.limit} bytes")
        if problems:
            return problems
        return BatchItem(index, prepared.body, prepared.row)


def _storable_key(key: Any) -> bool:
    """1 to 200 characters that a text column can hold (no NUL, no lone surrogate)."""
    if not isinstance(key, str) or not 0 < len(key) <= MAX_IDEMPOTENCY_KEY or "\x00" in key:
        return False
    if key.isascii():
        return True
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


async def ingest_batch(sink: EventSink, items: Sequence[BatchItem]) -> list[IngestedEvent]:
    """Write every item and its deliveries in one transaction, results in item order. An
    item whose key was seen before (earlier, or earlier in this batch) answers its first
    event, ``replayed``; a key reused for another event fails the whole batch (409)."""

    def check(results: Sequence[Any]) -> None:
        for index, written in enumerate(results):
            if written.existing is not None:  # only replayed keys have anything to compare
                item = items[index]
                try:
                    _same_or_conflict(written.existing, item.body, item.integration_id)
                except Conflict as error:
                    raise Conflict(
                        f"events[{index}].{BATCH_KEY_FIELD} was already used for a different event",
                        detail=f"events[{index}]: {error.detail}",
                        error_code=error.error_code,
                    ) from None

    results = await sink.accept_batch([item.row for item in items], check)
    return [
        IngestedEvent(item.row.event_id, item.body, len(written.delivery_ids), False)
        if written.existing is None
        else _same_or_conflict(written.existing, item.body, item.integration_id)
        for item, written in zip(items, results, strict=True)
    ]
