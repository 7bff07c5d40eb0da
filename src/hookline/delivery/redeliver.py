"""Sending deliveries again: one logged attempt ("redeliver") or every failure since a time
("recover").

A redelivery reuses the delivery row, so the receiver sees the same ``webhook-id`` header and
can deduplicate. The delivery goes back to ``pending`` with a queue row due now and a fresh
retry schedule (queue ``attempt`` 0), and the worker is woken after the commit.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from hookline.delivery.emit import DELIVERY_TOPIC
from hookline.delivery.logs import get_log
from hookline.delivery.webhooks import Webhook, get_webhook
from hookline.errors import ConstraintViolation, InvalidRequest
from hookline.store.db import request_wake
from hookline.store.ordering import queued_key
from hookline.store.statuses import DeliveryStatus, WebhookStatus
from hookline.store.tables import deliveries, delivery_queue

_CHUNK = 500


def _require_active(webhook: Webhook) -> None:
    if webhook.status != WebhookStatus.ACTIVE:
        raise InvalidRequest(
            f"Webhook {webhook.id} is inactive: activate it (PATCH status=active) before "
            "redelivering",
            error_code="ERROR_WEBHOOK_INACTIVE",
        )


async def redeliver_log(
    conn: AsyncConnection,
    *,
    account_id: uuid.UUID,
    webhook_id: uuid.UUID,
    log_id: uuid.UUID,
    now: datetime,
) -> uuid.UUID:
    """Queue the delivery of one logged attempt again; returns its (unchanged) delivery id."""
    webhook = await get_webhook(conn, account_id=account_id, webhook_id=webhook_id)
    log = await get_log(conn, account_id=account_id, webhook_id=webhook_id, log_id=log_id)
    _require_active(webhook)
    # Updating the delivery first locks its row (PostgreSQL), so concurrent redeliveries of
    # the same delivery run one after the other and find each other's queue row.
    result = await conn.execute(
        update(deliveries)
        .where(deliveries.c.id == log.delivery_id, deliveries.c.webhook_id == webhook_id)
        .values(status=DeliveryStatus.PENDING, updated_at=now)
    )
    if result.rowcount == 0:
        raise InvalidRequest(
            f"The delivery {log.delivery_id} of this log no longer exists",
            error_code="ERROR_DELIVERY_GONE",
        )
    await _enqueue(conn, log.delivery_id, webhook_id, log.event_id, now)
    await request_wake(conn, DELIVERY_TOPIC)
    return log.delivery_id


async def recover_failed(
    conn: AsyncConnection,
    *,
    account_id: uuid.UUID,
    webhook_id: uuid.UUID,
    since: datetime,
    now: datetime,
) -> int:
    """Redeliver every failed delivery of a webhook created or updated at or after ``since``.

    Returns how many deliveries were queued again. The status check is part of the
    ``UPDATE``, so two concurrent recovers never queue one delivery twice.
    """
    if since.tzinfo is None:
        since = since.replace(tzinfo=UTC)  # a time without zone is read as UTC
    webhook = await get_webhook(conn, account_id=account_id, webhook_id=webhook_id)
    _require_active(webhook)
    candidates = (
        (
            await conn.execute(
                select(deliveries.c.id)
                .where(
                    deliveries.c.webhook_id == webhook_id,
                    deliveries.c.account_id == account_id,
                    deliveries.c.status == DeliveryStatus.FAILED,
                    deliveries.c.updated_at >= since,
                )
                .order_by(deliveries.c.id)
            )
        )
        .scalars()
        .all()
    )
    count = 0
    for start in range(0, len(candidates), _CHUNK):
        chunk = candidates[start : start + _CHUNK]
        rows = (
            await conn.execute(
                update(deliveries)
                .where(deliveries.c.id.in_(chunk), deliveries.c.status == DeliveryStatus.FAILED)
                .values(status=DeliveryStatus.PENDING, updated_at=now)
                .returning(deliveries.c.id, deliveries.c.event_id)
            )
        ).all()
        for row in rows:
            await _enqueue(conn, row.id, webhook_id, row.event_id, now)
        count += len(rows)
    if count:
        await request_wake(conn, DELIVERY_TOPIC)
    return count


async def _enqueue(
    conn: AsyncConnection,
    delivery_id: uuid.UUID,
    webhook_id: uuid.UUID,
    event_id: uuid.UUID,
    now: datetime,
) -> None:
    """Make the delivery due now. A queue row held by a worker (leased) is left alone: that
    worker is sending it right now, and a second send would be a pointless duplicate."""
    current = (
        await conn.execute(
            select(delivery_queue.c.lease_owner).where(delivery_queue.c.delivery_id == delivery_id)
        )
    ).first()
    if current is not None:
        if current.lease_owner is None:
            await conn.execute(
                update(delivery_queue)
                .where(
                    delivery_queue.c.delivery_id == delivery_id,
                    delivery_queue.c.lease_owner.is_(None),
                )
                .values(available_at=now, attempt=0)
            )
        return
    try:
        async with conn.begin_nested():
            await conn.execute(
                insert(delivery_queue).values(
                    delivery_id=delivery_id,
                    webhook_id=webhook_id,
                    event_id=event_id,
                    available_at=now,
                    attempt=0,
                    lease_owner=None,
                    ordering_key=queued_key(webhook_id, event_id),
                )
            )
    except ConstraintViolation:
        pass  # queued concurrently, or the delivery deleted, in the meantime: nothing to do
