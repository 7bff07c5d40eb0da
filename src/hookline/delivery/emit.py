"""The one way an event enters hookline: inside the caller's transaction (transactional outbox).

The event row, one delivery per matching active webhook and their queue rows are written in
the same transaction as the state change that caused them, so an event exists if and only if
that change was committed. Workers are woken only after the commit.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from hookline.catalog import get_event_type, validate_body
from hookline.ids import new_id
from hookline.store.db import request_wake
from hookline.store.outbox import write_event
from hookline.store.tables import accounts, webhooks
from hookline.tracing import write_traceparent

DELIVERY_TOPIC = "deliveries"
REHEARSED_EVENT = "account.connection.deleted"


@dataclass(frozen=True)
class EmittedEvent:
    id: uuid.UUID
    body: dict[str, Any]
    payload: bytes
    delivery_ids: tuple[uuid.UUID, ...]


def build_body(
    *,
    account_id: uuid.UUID,
    event: str,
    consumer_id: uuid.UUID | None,
    created: int,
    fields: dict[str, Any],
) -> dict[str, Any]:
    """The flat body in the documented order; unknown optional fields become ``null``."""
    event_type = get_event_type(event)
    body: dict[str, Any] = {
        "accountid": str(account_id),
        "event": event,
        "consumerid": str(consumer_id) if consumer_id else None,
        "created": created,
    }
    names = event_type.field_names  # a property that builds its tuple: read it once
    for name in names:
        value = fields.get(name)
        body[name] = str(value) if isinstance(value, uuid.UUID) else value
    unknown = set(fields).difference(names)
    if unknown:
        body.update({name: fields[name] for name in sorted(unknown)})  # rejected by the schema
    return body


def encode_body(body: dict[str, Any]) -> bytes:
    """The exact bytes that are signed and sent: compact, ASCII-escaped JSON."""
    return json.dumps(body, separators=(",", ":"), ensure_ascii=True).encode("ascii")


def prepare_event(
    *,
    account_id: uuid.UUID,
    event: str,
    consumer_id: uuid.UUID | None,
    fields: dict[str, Any],
    now: datetime,
) -> tuple[dict[str, Any], bytes]:
    """The validated body and its exact bytes; raises before anything is written."""
    body = build_body(
        account_id=account_id,
        event=event,
        consumer_id=consumer_id,
        created=int(now.timestamp()),
        fields=fields,
    )
    validate_body(body)
    return body, encode_body(body)


async def emit(
    conn: AsyncConnection,
    *,
    account_id: uuid.UUID,
    event: str,
    consumer_id: uuid.UUID | None,
    fields: dict[str, Any],
    now: datetime,
    integration_id: int | None = None,
    idempotency_key: str | None = None,
) -> EmittedEvent:
    """Validate, store and fan out one event in ``conn``'s transaction.

    ``integration_id`` scopes POS events: they reach only webhooks registered for that
    integration. Raises :class:`hookline.catalog.InvalidEventBody` on a body that does not
    match the catalog, before anything is written.
    """
    body, payload = prepare_event(
        account_id=account_id, event=event, consumer_id=consumer_id, fields=fields, now=now
    )
    event_id = new_id()
    delivery_ids = await write_event(
        conn,
        event_id=event_id,
        account_id=account_id,
        event=event,
        consumer_id=consumer_id,
        integration_id=integration_id,
        payload=payload,
        idempotency_key=idempotency_key,
        now=now,
        pos=get_event_type(event).api == "POS",
        traceparent=write_traceparent(),
    )
    if delivery_ids:
        await request_wake(conn, DELIVERY_TOPIC)
    return EmittedEvent(event_id, body, payload, delivery_ids)


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
            status="active",
            created_at=now,
            updated_at=now,
        )
    )
    await emit(
        conn,
        account_id=account_id,
        event=REHEARSED_EVENT,
        consumer_id=new_id(),
        fields={"connectionid": str(new_id())},
        now=now,
    )
