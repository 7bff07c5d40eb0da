"""Webhook subscriptions (contract paths) and their logs, redelivery and recovery (extensions).

The routes only parse, resolve the ``integrationid`` against the connector catalog (which
``delivery`` may not import) and map results; the rules live in ``hookline.delivery``.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, ConfigDict, Field

from hookline.api.deps import AccountId, ReadConn, RuntimeDep
from hookline.api.limits import Int32, OffsetQuery, UtcDatetime
from hookline.delivery import logs as log_cases
from hookline.delivery import redeliver as redeliver_cases
from hookline.delivery import webhooks as cases
from hookline.delivery.logs import WebhookLog
from hookline.delivery.webhooks import Webhook
from hookline.platform.integrations import integration_ref

router = APIRouter(tags=["Webhooks"])

Status = Literal["active", "inactive"]


class WebhookInstancePostItem(BaseModel):
    # Unknown fields are refused (400): {"status": "inactive"} must not create an active
    # webhook. The contract's schema does not allow extra properties either.
    model_config = ConfigDict(extra="forbid")

    event: str = Field(max_length=80)
    url: str = Field(max_length=500)
    signingsecret: str | None = Field(default=None, max_length=100)
    integrationid: Int32 | None = None


class WebhookInstancePatchItem(BaseModel):
    """Lenient on purpose: fields that cannot change (``event``, ``integrationid``) are
    ignored, so a client may send back the object it read."""

    status: Status | None = None
    url: str | None = Field(default=None, max_length=500)
    signingsecret: str | None = Field(default=None, max_length=100)


class WebhookInstanceGetItem(BaseModel):
    webhookid: uuid.UUID
    accountid: uuid.UUID
    createdby: uuid.UUID | None = None
    createdon: datetime
    event: str
    url: str
    status: Status
    integrationid: int | None = None

    @classmethod
    def of(cls, webhook: Webhook) -> WebhookInstanceGetItem:
        return cls(
            webhookid=webhook.id,
            accountid=webhook.account_id,
            createdby=webhook.created_by,
            createdon=webhook.created_at,
            event=webhook.event,
            url=webhook.url,
            status=webhook.status,  # type: ignore[arg-type]
            integrationid=webhook.integration_id,
        )


class WebhookLogItem(BaseModel):
    """The contract's log item plus hookline's attempt details (extensions)."""

    webhooklogid: uuid.UUID
    webhookid: uuid.UUID
    event: str
    url: str
    accountid: str
    createdon: datetime
    httpstatus: int
    integrationid: int | None = None
    # hookline extensions
    attempt: int
    duration_ms: float
    outcome: str
    error_class: str | None = None
    response_excerpt: str | None = None
    delivery_id: uuid.UUID
    event_id: uuid.UUID
    next_attempt_at: datetime | None = None

    @classmethod
    def of(cls, log: WebhookLog) -> WebhookLogItem:
        return cls(
            webhooklogid=log.id,
            webhookid=log.webhook_id,
            event=log.event,
            url=log.url,
            accountid=str(log.account_id),
            createdon=log.created_at,
            httpstatus=log.http_status,
            integrationid=log.integration_id,
            attempt=log.attempt,
            duration_ms=log.duration_ms,
            outcome=log.outcome,
            error_class=log.error_class,
            response_excerpt=log.response_excerpt,
            delivery_id=log.delivery_id,
            event_id=log.event_id,
            next_attempt_at=log.next_attempt_at,
        )


class RedeliveryItem(BaseModel):
    delivery_id: uuid.UUID
    status: Literal["pending"] = "pending"


class RecoverItem(BaseModel):
    since: UtcDatetime


class RecoveredItem(BaseModel):
    count: int


_responses = {
    400: {"description": "Rule violation (ChiftError)"},
    404: {"description": "Unknown webhook (ChiftError)"},
}


@router.post(
    "/webhooks",
    response_model=WebhookInstanceGetItem,
    operation_id="webhooks_create_webhook",
    responses=_responses,
)
async def create_webhook(
    item: WebhookInstancePostItem, account_id: AccountId, runtime: RuntimeDep
) -> WebhookInstanceGetItem:
    async with runtime.db.transaction() as conn:
        integration = await integration_ref(conn, item.integrationid)
        webhook = await cases.create_webhook(
            conn,
            runtime.secret_box,
            account_id=account_id,
            event=item.event,
            url=item.url,
            signing_secret=item.signingsecret,
            integration_id=item.integrationid,
            integration=integration,
            now=runtime.clock.now(),
        )
    return WebhookInstanceGetItem.of(webhook)


@router.get(
    "/webhooks", response_model=list[WebhookInstanceGetItem], operation_id="webhooks_get_webhooks"
)
async def list_webhooks(
    account_id: AccountId, conn: ReadConn, status: Status | None = None
) -> list[WebhookInstanceGetItem]:
    found = await cases.list_webhooks(conn, account_id=account_id, status=status)
    return [WebhookInstanceGetItem.of(webhook) for webhook in found]


@router.get(
    "/webhooks/{webhookid}",
    response_model=WebhookInstanceGetItem,
    operation_id="webhooks_get_webhook",
    responses=_responses,
)
async def get_webhook(
    webhookid: uuid.UUID, account_id: AccountId, conn: ReadConn
) -> WebhookInstanceGetItem:
    webhook = await cases.get_webhook(conn, account_id=account_id, webhook_id=webhookid)
    return WebhookInstanceGetItem.of(webhook)


@router.patch(
    "/webhooks/{webhookid}",
    response_model=WebhookInstanceGetItem,
    operation_id="webhooks_update_webhook",
    responses=_responses,
)
async def update_webhook(
    webhookid: uuid.UUID, item: WebhookInstancePatchItem, account_id: AccountId, runtime: RuntimeDep
) -> WebhookInstanceGetItem:
    async with runtime.db.transaction() as conn:
        webhook = await cases.update_webhook(
            conn,
            runtime.secret_box,
            account_id=account_id,
            webhook_id=webhookid,
            status=item.status,
            url=item.url,
            signing_secret=item.signingsecret,
            now=runtime.clock.now(),
        )
    return WebhookInstanceGetItem.of(webhook)


@router.delete(
    "/webhooks/{webhookid}",
    status_code=204,
    response_class=Response,
    operation_id="webhooks_delete_webhook",
    responses=_responses,
)
async def delete_webhook(
    webhookid: uuid.UUID, account_id: AccountId, runtime: RuntimeDep
) -> Response:
    async with runtime.db.transaction() as conn:
        await cases.delete_webhook(conn, account_id=account_id, webhook_id=webhookid)
    return Response(status_code=204)


@router.get(
    "/webhooks/{webhookid}/logs",
    response_model=list[WebhookLogItem],
    operation_id="webhooks_get_webhook_logs",
    responses=_responses,
)
async def webhook_logs(
    webhookid: uuid.UUID,
    account_id: AccountId,
    conn: ReadConn,
    response: Response,
    limit: Annotated[int, Query(ge=1, le=log_cases.MAX_LIMIT)] = log_cases.DEFAULT_LIMIT,
    offset: OffsetQuery = 0,
    cursor: uuid.UUID | None = None,
    status: Annotated[str | None, Query(max_length=16)] = None,
    since: UtcDatetime | None = None,
) -> list[WebhookLogItem]:
    """Attempts newest first. When the page is full, ``X-Next-Cursor`` holds the value to pass
    as ``cursor`` for the next (older) page."""
    page = await log_cases.list_logs(
        conn,
        account_id=account_id,
        webhook_id=webhookid,
        limit=limit,
        offset=offset,
        cursor=cursor,
        status=status,
        since=since,
    )
    if page.next_cursor is not None:
        response.headers["X-Next-Cursor"] = str(page.next_cursor)
    return [WebhookLogItem.of(log) for log in page.items]


@router.post(
    "/webhooks/{webhookid}/logs/{webhooklogid}/redeliver",
    status_code=202,
    response_model=RedeliveryItem,
    tags=["hookline"],
    responses=_responses,
)
async def redeliver(
    webhookid: uuid.UUID, webhooklogid: uuid.UUID, account_id: AccountId, runtime: RuntimeDep
) -> RedeliveryItem:
    """Send that attempt's delivery again (same ``webhook-id``), with a fresh retry schedule."""
    async with runtime.db.transaction() as conn:
        delivery_id = await redeliver_cases.redeliver_log(
            conn,
            account_id=account_id,
            webhook_id=webhookid,
            log_id=webhooklogid,
            now=runtime.clock.now(),
        )
    return RedeliveryItem(delivery_id=delivery_id)


@router.post(
    "/webhooks/{webhookid}/recover",
    status_code=202,
    response_model=RecoveredItem,
    tags=["hookline"],
    responses=_responses,
)
async def recover(
    webhookid: uuid.UUID, item: RecoverItem, account_id: AccountId, runtime: RuntimeDep
) -> RecoveredItem:
    """Redeliver every failed delivery of the webhook created or updated since ``since``."""
    async with runtime.db.transaction() as conn:
        count = await redeliver_cases.recover_failed(
            conn,
            account_id=account_id,
            webhook_id=webhookid,
            since=item.since,
            now=runtime.clock.now(),
        )
    return RecoveredItem(count=count)
