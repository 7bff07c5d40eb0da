"""Test sends: one request of the event type's example body to a webhook, answered at once.

It goes exactly where a delivery goes: signed by the webhook's key (any rotation overlap and
scheme included), through :class:`~hookline.delivery.sender.Sender` and so through the SSRF
guard, marked ``x-hookline-test: 1``. Nothing is queued or retried; the attempt is logged in
the webhook's logs with ``attempt`` 0 (its ``delivery_id`` is the request's ``webhook-id``,
with no delivery behind it).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from hookline.catalog import BY_NAME, example_for
from hookline.delivery.sender import Sender
from hookline.delivery.signing import SigningKey, delivery_headers
from hookline.error_codes import ErrorCode
from hookline.errors import MissingReference, NotFound
from hookline.ids import new_id
from hookline.runtime import Runtime
from hookline.store.statuses import Outcome
from hookline.store.tables import webhook_logs, webhooks

TEST_HEADER = "x-hookline-test"
TEST_ATTEMPT = 0  # the ``attempt`` of a test send's log row


@dataclass(frozen=True)
class SentTest:
    log_id: uuid.UUID
    message_id: uuid.UUID  # the request's ``webhook-id``
    event: str
    http_status: int | None  # None when no response was received
    duration_ms: float
    outcome: str  # delivered (2xx) | failed
    error_class: str | None
    response_excerpt: str | None


async def send_test_event(
    runtime: Runtime, *, account_id: uuid.UUID, webhook_id: uuid.UUID
) -> SentTest:
    """Send the example body of the webhook's event type now (whatever the webhook's status:
    a test is how an endpoint is checked before enabling it) and log the attempt."""
    async with runtime.db.read() as conn:
        row = (
            await conn.execute(
                select(
                    webhooks.c.event,
                    webhooks.c.url,
                    webhooks.c.secret_encrypted,
                    webhooks.c.integration_id,
                ).where(webhooks.c.id == webhook_id, webhooks.c.account_id == account_id)
            )
        ).first()
    if row is None:
        raise NotFound(f"Webhook {webhook_id} not found", error_code=ErrorCode.WEBHOOK_NOT_FOUND)
    body = {
        **example_for(BY_NAME[row.event]),
        "accountid": str(account_id),
        "created": int(runtime.clock.timestamp()),
    }
    payload = orjson.dumps(body)
    message_id = new_id()
    key = (
        SigningKey.from_secret(runtime.secret_box.decrypt(row.secret_encrypted))
        if row.secret_encrypted
        else None
    )
    headers = delivery_headers(
        message_id=str(message_id),
        timestamp=int(runtime.clock.timestamp()),
        body=payload,
        key=key,
    )
    headers[TEST_HEADER] = "1"
    async with Sender(runtime.settings) as sender:
        result = await sender.send(row.url, payload, headers)
    ok = result.status is not None and 200 <= result.status < 300
    error_class = result.error_class
    if error_class is None and not ok:
        error_class = f"HTTP{result.status}"
    attempt = SentTest(
        log_id=new_id(),
        message_id=message_id,
        event=row.event,
        http_status=result.status,
        duration_ms=result.duration_ms,
        outcome=Outcome.DELIVERED if ok else Outcome.FAILED,
        error_class=error_class,
        response_excerpt=result.excerpt,
    )
    try:
        async with runtime.db.transaction() as conn:
            await _log(conn, attempt, account_id, webhook_id, row, runtime)
    except MissingReference:  # the webhook was deleted while its test was in flight
        raise NotFound(
            f"Webhook {webhook_id} not found", error_code=ErrorCode.WEBHOOK_NOT_FOUND
        ) from None
    return attempt


async def _log(
    conn: AsyncConnection,
    attempt: SentTest,
    account_id: uuid.UUID,
    webhook_id: uuid.UUID,
    row: Any,
    runtime: Runtime,
) -> None:
    await conn.execute(
        insert(webhook_logs).values(
            id=attempt.log_id,
            webhook_id=webhook_id,
            delivery_id=attempt.message_id,
            event_id=attempt.message_id,
            account_id=account_id,
            event=row.event,
            url=row.url,
            integration_id=row.integration_id,
            http_status=attempt.http_status or 0,
            attempt=TEST_ATTEMPT,
            duration_ms=attempt.duration_ms,
            outcome=attempt.outcome,
            error_class=attempt.error_class,
            response_excerpt=attempt.response_excerpt,
            next_attempt_at=None,
            created_at=runtime.clock.now(),
        )
    )
