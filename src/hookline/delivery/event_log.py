"""Reading an account's events: search newest first, and one event with where it went.

Searching never scans an account's whole history: events are read newest first through the
``(account_id, created_at)`` index in windows, filters are applied to each window, and one
request examines at most ``SCAN_BUDGET`` events. A page can therefore hold fewer items than
asked (even none) while ``next_cursor`` says where to continue; follow it until it is None.
This keeps the ingest path free of extra indexes (``POST /events`` is the hot path).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Select, and_, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from hookline.catalog import BY_NAME
from hookline.error_codes import ErrorCode
from hookline.errors import InvalidRequest, NotFound
from hookline.store.tables import deliveries, delivery_queue, events, webhook_logs, webhooks

DEFAULT_LIMIT = 50
MAX_LIMIT = 200
WINDOW = 500
SCAN_BUDGET = 20_000
ATTEMPTS_PER_DELIVERY = 100


@dataclass(frozen=True)
class EventFilter:
    event: str | None = None
    consumer_id: uuid.UUID | None = None
    connection_id: uuid.UUID | None = None
    since: datetime | None = None
    until: datetime | None = None

    @property
    def narrows(self) -> bool:
        """True when rows of a window may be left out (time bounds are applied in SQL)."""
        return bool(self.event or self.consumer_id or self.connection_id)


@dataclass(frozen=True)
class StoredEvent:
    id: uuid.UUID
    event: str
    consumer_id: uuid.UUID | None
    integration_id: int | None
    payload: bytes  # the exact body every webhook received
    created_at: datetime

    def body(self) -> Any:
        return json.loads(self.payload)

    def connection_id(self) -> str | None:
        body = self.body()
        value = body.get("connectionid") if isinstance(body, dict) else None
        return value if isinstance(value, str) else None


@dataclass(frozen=True)
class EventPage:
    items: list[StoredEvent]
    next_cursor: uuid.UUID | None  # the last examined event's id when more may follow


@dataclass(frozen=True)
class Attempt:
    log_id: uuid.UUID
    attempt: int
    http_status: int
    outcome: str
    error_class: str | None
    duration_ms: float
    created_at: datetime


@dataclass(frozen=True)
class EventDelivery:
    delivery_id: uuid.UUID
    webhook_id: uuid.UUID
    url: str | None  # None when the webhook was deleted (its deliveries go with it)
    webhook_status: str | None
    status: str  # pending | delivered | failed
    attempts: int
    last_http_status: int | None
    updated_at: datetime
    next_attempt_at: datetime | None  # due time while waiting in the queue
    sending: bool  # a worker holds it right now
    logs: list[Attempt]  # oldest first

    @property
    def latest_log_id(self) -> uuid.UUID | None:
        return self.logs[-1].log_id if self.logs else None


@dataclass(frozen=True)
class EventDetail:
    event: StoredEvent
    deliveries: list[EventDelivery]


def _aware(value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)  # a time without zone is read as UTC
    return value


def _event(row: Any) -> StoredEvent:
    return StoredEvent(
        id=row.id,
        event=row.event_type,
        consumer_id=row.consumer_id,
        integration_id=row.integration_id,
        payload=bytes(row.payload),
        created_at=row.created_at,
    )


def _matcher(filters: EventFilter) -> Callable[[Any], bool]:
    needle = (
        b'"connectionid":"%s"' % str(filters.connection_id).encode()
        if filters.connection_id
        else None
    )

    def matches(row: Any) -> bool:
        if filters.event and row.event_type != filters.event:
            return False
        if filters.consumer_id and row.consumer_id != filters.consumer_id:
            return False
        return needle is None or needle in bytes(row.payload)

    return matches


async def list_events(
    conn: AsyncConnection,
    *,
    account_id: uuid.UUID,
    filters: EventFilter = EventFilter(),
    limit: int = DEFAULT_LIMIT,
    cursor: uuid.UUID | None = None,
) -> EventPage:
    """One page of the account's events, newest first (see the module docstring)."""
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidRequest(f"limit must be between 1 and {MAX_LIMIT}")
    if filters.event and filters.event not in BY_NAME:
        raise InvalidRequest(
            f"Unknown event type {filters.event!r}", error_code=ErrorCode.UNKNOWN_EVENT
        )
    since, until = _aware(filters.since), _aware(filters.until)
    if since is not None and until is not None and since > until:
        raise InvalidRequest("since must not be after until", error_code=ErrorCode.INVALID_FILTER)
    anchor: tuple[datetime, uuid.UUID] | None = None
    if cursor is not None:
        created = (
            await conn.execute(
                select(events.c.created_at).where(
                    events.c.id == cursor, events.c.account_id == account_id
                )
            )
        ).scalar_one_or_none()
        if created is None:
            raise NotFound(f"Event {cursor} not found", error_code=ErrorCode.EVENT_NOT_FOUND)
        anchor = (created, cursor)
    matches = _matcher(filters)
    window = WINDOW if filters.narrows else limit
    found: list[StoredEvent] = []
    scanned = 0
    while True:
        query = window_statement(account_id, since, until, anchor, window)
        rows = (await conn.execute(query)).all()
        for row in rows:
            if matches(row):
                found.append(_event(row))
                if len(found) == limit:
                    return EventPage(found, row.id)
        scanned += len(rows)
        if len(rows) < window:
            return EventPage(found, None)
        anchor = (rows[-1].created_at, rows[-1].id)
        if scanned >= SCAN_BUDGET:
            return EventPage(found, rows[-1].id)


def window_statement(
    account_id: uuid.UUID,
    since: datetime | None,
    until: datetime | None,
    anchor: tuple[datetime, uuid.UUID] | None,
    size: int,
) -> Select[Any]:
    """The next ``size`` events of the account, newest first, older than ``anchor``: a range
    of ``ix_events_account_created``."""
    query = select(events).where(events.c.account_id == account_id)
    if since is not None:
        query = query.where(events.c.created_at >= since)
    if until is not None:
        query = query.where(events.c.created_at <= until)
    if anchor is not None:  # the first condition bounds the index range, the second is exact
        query = query.where(
            events.c.created_at <= anchor[0],
            or_(
                events.c.created_at < anchor[0],
                and_(events.c.created_at == anchor[0], events.c.id < anchor[1]),
            ),
        )
    return query.order_by(events.c.created_at.desc(), events.c.id.desc()).limit(size)


def attempts_statement(delivery_ids: list[uuid.UUID], account_id: uuid.UUID) -> Select[Any]:
    """The attempts of some deliveries, oldest first (``ix_webhook_logs_delivery``)."""
    return (
        select(webhook_logs)
        .where(
            webhook_logs.c.delivery_id.in_(delivery_ids),
            webhook_logs.c.account_id == account_id,
        )
        .order_by(webhook_logs.c.created_at, webhook_logs.c.id)
    )


async def get_event(
    conn: AsyncConnection, *, account_id: uuid.UUID, event_id: uuid.UUID
) -> EventDetail:
    """The event, and per webhook it went to: its delivery and that delivery's attempts."""
    row = (
        await conn.execute(
            select(events).where(events.c.id == event_id, events.c.account_id == account_id)
        )
    ).first()
    if row is None:
        raise NotFound(f"Event {event_id} not found", error_code=ErrorCode.EVENT_NOT_FOUND)
    joined = deliveries.outerjoin(
        delivery_queue, delivery_queue.c.delivery_id == deliveries.c.id
    ).outerjoin(webhooks, webhooks.c.id == deliveries.c.webhook_id)
    rows = (
        await conn.execute(
            select(
                deliveries,
                webhooks.c.url,
                webhooks.c.status.label("webhook_status"),
                delivery_queue.c.available_at,
                delivery_queue.c.lease_owner,
            )
            .select_from(joined)
            .where(deliveries.c.event_id == event_id, deliveries.c.account_id == account_id)
            .order_by(deliveries.c.created_at, deliveries.c.id)
        )
    ).all()
    logs: dict[uuid.UUID, list[Attempt]] = {item.id: [] for item in rows}
    if logs:
        found = await conn.execute(attempts_statement(list(logs), account_id))
        for log in found:
            kept = logs[log.delivery_id]
            kept.append(
                Attempt(
                    log_id=log.id,
                    attempt=log.attempt,
                    http_status=log.http_status,
                    outcome=log.outcome,
                    error_class=log.error_class,
                    duration_ms=log.duration_ms,
                    created_at=log.created_at,
                )
            )
            if len(kept) > ATTEMPTS_PER_DELIVERY:
                del kept[0]  # keep the latest ones
    return EventDetail(
        event=_event(row),
        deliveries=[
            EventDelivery(
                delivery_id=item.id,
                webhook_id=item.webhook_id,
                url=item.url,
                webhook_status=item.webhook_status,
                status=item.status,
                attempts=item.attempts,
                last_http_status=item.last_http_status,
                updated_at=item.updated_at,
                next_attempt_at=item.available_at if item.lease_owner is None else None,
                sending=item.lease_owner is not None,
                logs=logs[item.id],
            )
            for item in rows
        ],
    )
