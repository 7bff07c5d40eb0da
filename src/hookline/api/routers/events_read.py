"""GET /events and GET /events/{eventid} (extensions): find an event, see where it went.

Kept apart from ``events.py`` (POST /events, the hot path) so each router has one job.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel

from hookline.api.deps import AccountId, ReadConn
from hookline.delivery import event_log
from hookline.delivery.event_log import EventDelivery, EventFilter, StoredEvent

router = APIRouter(tags=["hookline"])

_responses: dict[int | str, dict[str, Any]] = {
    400: {"description": "Invalid filter (ChiftError)"},
    404: {"description": "Unknown event or cursor (ChiftError)"},
}


class EventItem(BaseModel):
    eventid: uuid.UUID
    event: str
    consumerid: uuid.UUID | None = None
    connectionid: str | None = None
    integrationid: int | None = None
    created: datetime
    body: Any  # exactly what every webhook received

    @classmethod
    def of(cls, item: StoredEvent) -> EventItem:
        return cls(
            eventid=item.id,
            event=item.event,
            consumerid=item.consumer_id,
            connectionid=item.connection_id(),
            integrationid=item.integration_id,
            created=item.created_at,
            body=item.body(),
        )


class AttemptItem(BaseModel):
    webhooklogid: uuid.UUID
    attempt: int
    httpstatus: int
    outcome: str
    error_class: str | None = None
    duration_ms: float
    createdon: datetime


class EventDeliveryItem(BaseModel):
    webhookid: uuid.UUID
    url: str | None = None
    delivery_id: uuid.UUID
    status: str  # pending | delivered | failed
    attempts: int
    last_http_status: int | None = None
    next_attempt_at: datetime | None = None
    sending: bool
    logs: list[AttemptItem]

    @classmethod
    def of(cls, item: EventDelivery) -> EventDeliveryItem:
        return cls(
            webhookid=item.webhook_id,
            url=item.url,
            delivery_id=item.delivery_id,
            status=item.status,
            attempts=item.attempts,
            last_http_status=item.last_http_status,
            next_attempt_at=item.next_attempt_at,
            sending=item.sending,
            logs=[
                AttemptItem(
                    webhooklogid=log.log_id,
                    attempt=log.attempt,
                    httpstatus=log.http_status,
                    outcome=log.outcome,
                    error_class=log.error_class,
                    duration_ms=log.duration_ms,
                    createdon=log.created_at,
                )
                for log in item.logs
            ],
        )


class EventDetailItem(EventItem):
    webhooks: list[EventDeliveryItem]


@router.get(
    "/events",
    response_model=list[EventItem],
    operation_id="events_list_events",
    responses=_responses,
)
async def list_events(
    account_id: AccountId,
    conn: ReadConn,
    response: Response,
    event: Annotated[str | None, Query(max_length=80)] = None,
    consumerid: uuid.UUID | None = None,
    connectionid: uuid.UUID | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: Annotated[int, Query(ge=1, le=event_log.MAX_LIMIT)] = event_log.DEFAULT_LIMIT,
    cursor: uuid.UUID | None = None,
) -> list[EventItem]:
    """The account's events, newest first. While ``X-Next-Cursor`` is present, pass it as
    ``cursor`` for the next (older) page; with filters a page may hold fewer items than
    ``limit``, even none, since each request examines a bounded number of events."""
    page = await event_log.list_events(
        conn,
        account_id=account_id,
        filters=EventFilter(
            event=event,
            consumer_id=consumerid,
            connection_id=connectionid,
            since=since,
            until=until,
        ),
        limit=limit,
        cursor=cursor,
    )
    if page.next_cursor is not None:
        response.headers["X-Next-Cursor"] = str(page.next_cursor)
    return [EventItem.of(item) for item in page.items]


@router.get(
    "/events/{eventid}",
    response_model=EventDetailItem,
    operation_id="events_get_event",
    responses=_responses,
)
async def get_event(eventid: uuid.UUID, account_id: AccountId, conn: ReadConn) -> EventDetailItem:
    """The event's exact body, and for each webhook it went to: the delivery's status,
    attempts and next attempt."""
    detail = await event_log.get_event(conn, account_id=account_id, event_id=eventid)
    item = EventItem.of(detail.event)
    return EventDetailItem(
        **item.model_dump(), webhooks=[EventDeliveryItem.of(d) for d in detail.deliveries]
    )
