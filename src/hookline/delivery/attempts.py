"""One attempt whole: what was sent (headers and body), what came back, and what comes next.

The request body is not copied into every log row: it is the event's payload, byte for byte
(a redelivery sends the same bytes), so it is read from the event. The retry schedule ahead is
the configured schedule without jitter: the worker adds up to ±``retry_jitter`` to each delay.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from hookline.delivery.logs import WebhookLog, get_log, header_pairs
from hookline.store.statuses import DeliveryStatus, Outcome
from hookline.store.tables import deliveries, delivery_queue, events


@dataclass(frozen=True)
class PlannedAttempt:
    number: int
    at: datetime


@dataclass(frozen=True)
class DeliveryState:
    """Where the attempt's delivery stands now (it may have moved on since this attempt)."""

    status: str  # pending | delivered | failed
    attempts: int
    next_attempt_at: datetime | None  # due time in the queue; None when not waiting
    sending: bool  # a worker holds it right now


@dataclass(frozen=True)
class AttemptDetail:
    log: WebhookLog
    request_body: bytes | None  # None when the event is gone
    delivery: DeliveryState | None  # None when the delivery is gone
    ahead: list[PlannedAttempt]  # the rest of the schedule if every retry fails

    @property
    def request_text(self) -> str | None:
        return None if self.request_body is None else self.request_body.decode("utf-8", "replace")

    @property
    def request_header_pairs(self) -> list[tuple[str, str]]:
        return header_pairs(self.log.request_headers)

    @property
    def response_header_pairs(self) -> list[tuple[str, str]]:
        return header_pairs(self.log.response_headers)


def schedule_ahead(
    attempt: int, next_attempt_at: datetime | None, schedule: Sequence[float]
) -> list[PlannedAttempt]:
    """The attempts still planned after attempt number ``attempt`` (1-based), when it is to
    be retried at ``next_attempt_at``: that one, then one per remaining schedule entry."""
    if next_attempt_at is None:
        return []
    planned = [PlannedAttempt(attempt + 1, next_attempt_at)]
    moment = next_attempt_at
    for index in range(attempt + 1, len(schedule)):
        moment = moment + timedelta(seconds=max(0.0, float(schedule[index])))
        planned.append(PlannedAttempt(index + 1, moment))
    return planned


async def get_attempt(
    conn: AsyncConnection,
    *,
    account_id: uuid.UUID,
    webhook_id: uuid.UUID,
    log_id: uuid.UUID,
    schedule: Sequence[float],
) -> AttemptDetail:
    """The attempt ``log_id`` of the account's webhook (404 for anyone else's)."""
    log = await get_log(conn, account_id=account_id, webhook_id=webhook_id, log_id=log_id)
    body = (
        await conn.execute(
            select(events.c.payload).where(
                events.c.id == log.event_id, events.c.account_id == account_id
            )
        )
    ).scalar_one_or_none()
    row = (
        await conn.execute(
            select(
                deliveries.c.status,
                deliveries.c.attempts,
                delivery_queue.c.available_at,
                delivery_queue.c.lease_owner,
            )
            .select_from(
                deliveries.outerjoin(
                    delivery_queue, delivery_queue.c.delivery_id == deliveries.c.id
                )
            )
            .where(deliveries.c.id == log.delivery_id, deliveries.c.account_id == account_id)
        )
    ).first()
    state = None
    if row is not None:
        waiting = row.available_at is not None and row.lease_owner is None
        state = DeliveryState(
            status=row.status,
            attempts=row.attempts,
            next_attempt_at=row.available_at if waiting else None,
            sending=row.lease_owner is not None,
        )
    ahead: list[PlannedAttempt] = []
    if (
        log.outcome == Outcome.RETRY
        and state is not None
        and state.status == DeliveryStatus.PENDING
    ):
        ahead = schedule_ahead(log.attempt, log.next_attempt_at, schedule)
    return AttemptDetail(
        log=log, request_body=None if body is None else bytes(body), delivery=state, ahead=ahead
    )
