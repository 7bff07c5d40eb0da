"""The one way an event enters hookline: a draft, validated against the catalog, handed to
the database's event sink (:mod:`hookline.store.event_sink`).

:func:`emit_draft` writes inside the caller's transaction (transactional outbox): the event row, one
delivery per matching active webhook and their queue rows are written in the same
transaction as the state change that caused them, so an event exists if and only if that
change was committed. Workers are woken only after the commit. Standalone events (the
``POST /events`` routes) go through :mod:`hookline.delivery.ingest` to the sink's own
group-committed transactions.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from hookline.catalog import get_event_type, validate_body
from hookline.catalog.schemas import field_names
from hookline.ids import new_id
from hookline.store.event_sink import EventRow, sink_of
from hookline.store.statuses import WebhookStatus
from hookline.store.tables import accounts, webhooks
from hookline.store.wakeups import DELIVERIES
from hookline.tracing import write_traceparent

DELIVERY_TOPIC = DELIVERIES
REHEARSED_EVENT = "account.connection.deleted"
_SCALARS = frozenset((str, int, bool, type(None)))


@dataclass(frozen=True, slots=True, kw_only=True)
class EventDraft:
    """An event a producer asks for: whose, which type, the body's own fields, when, and
    optionally the POS integration it comes from and its idempotency key."""

    account_id: uuid.UUID
    event: str
    consumer_id: uuid.UUID | None
    fields: Mapping[str, Any]
    now: datetime
    integration_id: int | None = None
    idempotency_key: str | None = None


@dataclass(frozen=True, slots=True)
class PreparedEvent:
    """A validated draft: the body receivers get, and the row the sink writes."""

    body: dict[str, Any]
    row: EventRow


@dataclass(frozen=True)
class EmittedEvent:
    id: uuid.UUID
    body: dict[str, Any]
    payload: bytes
    delivery_ids: tuple[uuid.UUID, ...]
    replayed: bool = False  # its idempotency key had already made this event: nothing written


def build_body(
    *,
    account_id: uuid.UUID,
    event: str,
    consumer_id: uuid.UUID | None,
    created: int,
    fields: Mapping[str, Any],
) -> dict[str, Any]:
    """The flat body in the documented order; unknown optional fields become ``null``."""
    names = field_names(event)
    body: dict[str, Any] = {
        "accountid": str(account_id),
        "event": event,
        "consumerid": str(consumer_id) if consumer_id else None,
        "created": created,
    }
    for name in names:
        value = fields.get(name)
        body[name] = str(value) if isinstance(value, uuid.UUID) else value
    unknown = set(fields).difference(names)
    if unknown:
        body.update({name: fields[name] for name in sorted(unknown)})  # rejected by the schema
    return body


def encode_body(body: Mapping[str, Any]) -> bytes:
    """The exact bytes that are signed and sent: compact, ASCII-escaped JSON.

    A flat body of plain strings, integers, booleans and nulls (every event a producer
    sends, in practice) is encoded by orjson, whose output is then byte for byte that of
    ``json.dumps(..., separators=(",", ":"), ensure_ascii=True)``: when it is ASCII and has
    no DEL (which ``json`` escapes and orjson does not). Anything else goes through ``json``.
    """
    for value in body.values():
        if type(value) not in _SCALARS:
            break
    else:
        try:
            fast = orjson.dumps(body)
        except TypeError:  # an integer beyond 64 bits, a lone surrogate, a non-str key
            pass
        else:
            if fast.isascii() and fast.find(b"\x7f") < 0:  # find: ``in`` raises inside
                return fast
    return json.dumps(body, separators=(",", ":"), ensure_ascii=True).encode("ascii")


def prepare(draft: EventDraft) -> PreparedEvent:
    """Validate ``draft`` and encode its body; raises before anything is written
    (:class:`hookline.catalog.UnknownEventType`, :class:`hookline.catalog.InvalidEventBody`)."""
    event_type = get_event_type(draft.event)
    body = build_body(
        account_id=draft.account_id,
        event=draft.event,
        consumer_id=draft.consumer_id,
        created=int(draft.now.timestamp()),
        fields=draft.fields,
    )
    validate_body(body)
    row = EventRow(
        new_id(),
        draft.account_id,
        draft.event,
        draft.consumer_id,
        draft.integration_id,
        encode_body(body),
        draft.idempotency_key,
        draft.now,
        event_type.api == "POS",
        write_traceparent(),
    )
    return PreparedEvent(body, row)


async def emit_draft(conn: AsyncConnection, draft: EventDraft) -> EmittedEvent:
    """Validate, store and fan out ``draft`` in ``conn``'s transaction (a
    ``Database.transaction()`` connection; workers are woken after its commit).

    ``integration_id`` scopes POS events: they reach only webhooks registered for that
    integration. With an idempotency key that already made an event, nothing is written and
    that event comes back (``replayed``).
    """
    prepared = prepare(draft)
    written = await sink_of(conn).emit(conn, prepared.row)
    if written.existing is not None:
        found = written.existing
        return EmittedEvent(found.id, json.loads(found.payload), found.payload, (), True)
    row = prepared.row
    return EmittedEvent(row.event_id, prepared.body, row.payload, written.delivery_ids)


async def rehearse_emit(conn: AsyncConnection) -> None:
    """Emit one event to one webhook of a throwaway account, for the caller to roll back:
    the rehearsal :meth:`hookline.store.db.Database.connect_ahead` runs on each pooled
    connection at start-up (nothing of it is ever committed, so no wake-up is sent)."""
    now = datetime.now(UTC)
    account_id = new_id()
    await conn.execute(insert(accounts).values(id=account_id, name="warm-up", created_at=now))
    await conn.execute(
        insert(webhooks).values(
            id=new_id(),
            account_id=account_id,
            event=REHEARSED_EVENT,
            url="http://warm-up.invalid/",
            status=WebhookStatus.ACTIVE,
            created_at=now,
            updated_at=now,
        )
    )
    await emit_draft(
        conn,
        EventDraft(
            account_id=account_id,
            event=REHEARSED_EVENT,
            consumer_id=new_id(),
            fields={"connectionid": str(new_id())},
            now=now,
        ),
    )
