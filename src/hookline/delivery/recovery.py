"""What "recover" would do before it runs, and sending retrying deliveries now.

Recover (:func:`hookline.delivery.redeliver.recover_failed`) sends again deliveries that
*failed*; deliveries still being retried are ``pending`` with a due time in the queue, so
recover leaves them alone. The preview counts both, so the dashboard can say which applies,
and :func:`send_retrying_now` makes the retrying ones due at once (their schedule goes on
from there if they fail again). Both read deliveries through ``ix_deliveries_webhook_status``.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import ColumnElement, func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from hookline.delivery.emit import DELIVERY_TOPIC
from hookline.delivery.webhooks import get_webhook
from hookline.error_codes import ErrorCode
from hookline.errors import InvalidRequest
from hookline.store.db import request_wake
from hookline.store.statuses import DeliveryStatus, WebhookStatus
from hookline.store.tables import deliveries, delivery_queue

_CHUNK = 500


@dataclass(frozen=True)
class RecoveryPreview:
    since: datetime
    failed: int  # failed since ``since``: what recover sends again
    retrying: int  # attempted, failed, waiting for their next try
    next_retry_at: datetime | None


def _retrying(webhook_id: uuid.UUID, account_id: uuid.UUID) -> list[ColumnElement[bool]]:
    return [
        deliveries.c.webhook_id == webhook_id,
        deliveries.c.account_id == account_id,
        deliveries.c.status == DeliveryStatus.PENDING,
        deliveries.c.attempts > 0,
    ]


async def recovery_preview(
    conn: AsyncConnection, *, account_id: uuid.UUID, webhook_id: uuid.UUID, since: datetime
) -> RecoveryPreview:
    if since.tzinfo is None:
        since = since.replace(tzinfo=UTC)
    await get_webhook(conn, account_id=account_id, webhook_id=webhook_id)
    failed = (
        await conn.execute(
            select(func.count()).where(
                deliveries.c.webhook_id == webhook_id,
                deliveries.c.account_id == account_id,
                deliveries.c.status == DeliveryStatus.FAILED,
                deliveries.c.updated_at >= since,
            )
        )
    ).scalar_one()
    retrying, next_at = (
        await conn.execute(
            select(func.count(deliveries.c.id), func.min(delivery_queue.c.available_at))
            .select_from(
                deliveries.outerjoin(
                    delivery_queue, delivery_queue.c.delivery_id == deliveries.c.id
                )
            )
            .where(*_retrying(webhook_id, account_id))
        )
    ).one()
    return RecoveryPreview(
        since=since, failed=int(failed), retrying=int(retrying), next_retry_at=next_at
    )


async def send_retrying_now(
    conn: AsyncConnection, *, account_id: uuid.UUID, webhook_id: uuid.UUID, now: datetime
) -> int:
    """Make every retrying delivery of the webhook due now; returns how many. One a worker
    is sending right now (leased) is left to it."""
    webhook = await get_webhook(conn, account_id=account_id, webhook_id=webhook_id)
    if webhook.status != WebhookStatus.ACTIVE:
        raise InvalidRequest(
            f"Webhook {webhook.id} is inactive: activate it before sending its deliveries",
            error_code=ErrorCode.WEBHOOK_INACTIVE,
        )
    ids = list(
        (await conn.execute(select(deliveries.c.id).where(*_retrying(webhook_id, account_id))))
        .scalars()
        .all()
    )
    count = 0
    for start in range(0, len(ids), _CHUNK):
        result = await conn.execute(
            update(delivery_queue)
            .where(
                delivery_queue.c.delivery_id.in_(ids[start : start + _CHUNK]),
                delivery_queue.c.lease_owner.is_(None),
                delivery_queue.c.available_at > now,
            )
            .values(available_at=now)
        )
        count += result.rowcount
    if count:
        await request_wake(conn, DELIVERY_TOPIC)
    return count
