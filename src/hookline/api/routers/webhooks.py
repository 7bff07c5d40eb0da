"""Webhook subscriptions (contract paths) and their logs, redelivery and recovery (extensions).

The routes only parse, resolve the ``integrationid`` against the connector catalog (which
``delivery`` may not import) and map results; the rules live in ``hookline.delivery``.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, ConfigDict, Field, StrictFloat
from sqlalchemy.ext.asyncio import AsyncConnection

from hookline.api.deps import AccountId, ReadConn, RuntimeDep
from hookline.api.limits import Int32, OffsetQuery, UtcDatetime
from hookline.delivery import circuits as circuit_cases
from hookline.delivery import logs as log_cases
from hookline.delivery import redeliver as redeliver_cases
from hookline.delivery import webhooks as cases
from hookline.delivery.attempts import AttemptDetail, get_attempt
from hookline.delivery.logs import WebhookLog
from hookline.delivery.probe import SentTest, send_test_event
from hookline.delivery.webhooks import Webhook
from hookline.platform.integrations import integration_ref
from hookline.runtime import Runtime

router = APIRouter(tags=["Webhooks"])

Status = Literal["active", "inactive"]
SignatureScheme = Literal["hmac", "ed25519"]
_FILTER_DOC = (
    "hookline extension: body field -> list of accepted values (strings, integers, booleans, "
    "null); only events whose body matches every field are delivered. Fields must exist in "
    "the event type's schema."
)
Ordering = Literal["none", "per_consumer"]
_RATE_LIMIT_DOC = (
    "hookline extension: at most this many deliveries per second to this webhook, across "
    f"every worker ({cases.MIN_RATE_LIMIT:g} to {cases.MAX_RATE_LIMIT:g}; null: no limit). "
    "Deliveries over the limit wait in the queue; no attempt is spent waiting."
)
_ORDERING_DOC = (
    "hookline extension: `per_consumer` sends the deliveries of one `consumerid` one at a "
    "time, in event order (a retrying delivery holds the later ones of its consumer); "
    "`none` sends them independently."
)


class WebhookInstancePostItem(BaseModel):
    # Unknown fields are refused (400): {"status": "inactive"} must not create an active
    # webhook. The contract's schema does not allow extra properties either.
    model_config = ConfigDict(extra="forbid")

    event: str = Field(max_length=80)
    url: str = Field(max_length=500)
    signingsecret: str | None = Field(default=None, max_length=100)
    integrationid: Int32 | None = None
    # hookline extensions
    signature_scheme: SignatureScheme = Field(
        default="hmac",
        description="hookline extension: `ed25519` signs `webhook-signature: v1a,...` with a "
        "key pair hookline generates (no signingsecret); the public key is `public_key`.",
    )
    filter: dict[str, Any] | None = Field(default=None, description=_FILTER_DOC)
    rate_limit_per_second: StrictFloat | None = Field(
        default=None, allow_inf_nan=False, description=_RATE_LIMIT_DOC
    )
    ordering: Ordering = Field(default="none", description=_ORDERING_DOC)


class WebhookInstancePatchItem(BaseModel):
    """Lenient on purpose: fields that cannot change (``event``, ``integrationid``) are
    ignored, so a client may send back the object it read."""

    status: Status | None = None
    url: str | None = Field(default=None, max_length=500)
    signingsecret: str | None = Field(default=None, max_length=100)
    # hookline extension
    filter: dict[str, Any] | None = Field(
        default=None, description=_FILTER_DOC + " `{}` removes the filter."
    )
    rate_limit_per_second: StrictFloat | None = Field(
        default=None,
        allow_inf_nan=False,
        description=_RATE_LIMIT_DOC + " Given as null it removes the limit; omitted, it is kept.",
    )
    ordering: Ordering | None = Field(default=None, description=_ORDERING_DOC)


class CircuitItem(BaseModel):
    """The circuit of the webhook's destination (scheme + host + port), read-only."""

    state: Literal["closed", "open", "half_open"]
    failures: int = 0
    opened_at: datetime | None = None
    retry_at: datetime | None = None


class WebhookInstanceGetItem(BaseModel):
    webhookid: uuid.UUID
    accountid: uuid.UUID
    createdby: uuid.UUID | None = None
    createdon: datetime
    event: str
    url: str
    status: Status
    integrationid: int | None = None
    # hookline extension: the circuit of the webhook's destination
    circuit: CircuitItem | None = None
    # hookline extensions
    signature_scheme: SignatureScheme = "hmac"
    public_key: str | None = Field(
        default=None, description="`whpk_` Ed25519 public key (ed25519 webhooks only)"
    )
    rotation_overlap_until: datetime | None = Field(
        default=None,
        description="End of the current rotation's overlap: until then deliveries carry the "
        "previous key's signature too",
    )
    filter: dict[str, list[Any]] | None = None
    rate_limit_per_second: float | None = Field(default=None, description=_RATE_LIMIT_DOC)
    ordering: Ordering = Field(default="none", description=_ORDERING_DOC)

    @classmethod
    def of(
        cls, webhook: Webhook, circuit: circuit_cases.CircuitView | None = None
    ) -> WebhookInstanceGetItem:
        return cls(
            webhookid=webhook.id,
            accountid=webhook.account_id,
            createdby=webhook.created_by,
            createdon=webhook.created_at,
            event=webhook.event,
            url=webhook.url,
            status=webhook.status,
            integrationid=webhook.integration_id,
            circuit=None
            if circuit is None
            else CircuitItem(
                state=circuit.state.value,
                failures=circuit.failures,
                opened_at=circuit.opened_at,
                retry_at=circuit.retry_at,
            ),
            signature_scheme=webhook.signature_scheme.value,
            public_key=webhook.public_key,
            rotation_overlap_until=webhook.previous_secret_until,
            filter=webhook.filter,
            rate_limit_per_second=webhook.rate_limit_per_second,
            ordering=webhook.ordering,
        )


class RotateSecretItem(BaseModel):
    signingsecret: str | None = Field(
        default=None,
        max_length=100,
        description="The new secret (HMAC webhooks); generated (`whsec_...`) when omitted",
    )
    overlap_seconds: int = Field(
        default=cases.DEFAULT_OVERLAP_SECONDS,
        description="How long the previous key keeps signing beside the new one "
        f"(0 to {cases.MAX_OVERLAP_SECONDS} seconds; 0 replaces it at once)",
    )


class RotatedSecretItem(WebhookInstanceGetItem):
    signingsecret: str | None = Field(
        default=None, description="The generated secret: shown in this answer only"
    )


class SentTestItem(BaseModel):
    webhooklogid: uuid.UUID
    webhookid: uuid.UUID
    message_id: uuid.UUID = Field(description="The request's `webhook-id`")
    event: str
    httpstatus: int | None = Field(description="None when no response was received")
    duration_ms: float
    outcome: Literal["delivered", "failed"]
    error_class: str | None = None
    response_excerpt: str | None = None

    @classmethod
    def of(cls, webhook_id: uuid.UUID, attempt: SentTest) -> SentTestItem:
        return cls(
            webhooklogid=attempt.log_id,
            webhookid=webhook_id,
            message_id=attempt.message_id,
            event=attempt.event,
            httpstatus=attempt.http_status,
            duration_ms=attempt.duration_ms,
            outcome=attempt.outcome,
            error_class=attempt.error_class,
            response_excerpt=attempt.response_excerpt,
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


async def _circuit(conn: AsyncConnection, runtime: Runtime, webhook: Webhook) -> Any:
    circuits = await circuit_cases.circuits_of_urls(conn, [webhook.url], runtime.clock.now())
    return circuits[webhook.url]


_responses: dict[int | str, dict[str, Any]] = {
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
            signature_scheme=item.signature_scheme,
            payload_filter=item.filter,
            rate_limit_per_second=item.rate_limit_per_second,
            ordering=item.ordering,
        )
        circuit = await _circuit(conn, runtime, webhook)
    return WebhookInstanceGetItem.of(webhook, circuit)


@router.get(
    "/webhooks", response_model=list[WebhookInstanceGetItem], operation_id="webhooks_get_webhooks"
)
async def list_webhooks(
    account_id: AccountId, conn: ReadConn, runtime: RuntimeDep, status: Status | None = None
) -> list[WebhookInstanceGetItem]:
    found = await cases.list_webhooks(conn, account_id=account_id, status=status)
    circuits = await circuit_cases.circuits_of_urls(
        conn, [webhook.url for webhook in found], runtime.clock.now()
    )
    return [WebhookInstanceGetItem.of(webhook, circuits[webhook.url]) for webhook in found]


@router.get(
    "/webhooks/{webhookid}",
    response_model=WebhookInstanceGetItem,
    operation_id="webhooks_get_webhook",
    responses=_responses,
)
async def get_webhook(
    webhookid: uuid.UUID, account_id: AccountId, conn: ReadConn, runtime: RuntimeDep
) -> WebhookInstanceGetItem:
    webhook = await cases.get_webhook(conn, account_id=account_id, webhook_id=webhookid)
    return WebhookInstanceGetItem.of(webhook, await _circuit(conn, runtime, webhook))


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
            payload_filter=item.filter,
            rate_limit_per_second=item.rate_limit_per_second
            if "rate_limit_per_second" in item.model_fields_set
            else cases.KEEP,
            ordering=item.ordering,
            now=runtime.clock.now(),
        )
        circuit = await _circuit(conn, runtime, webhook)
    return WebhookInstanceGetItem.of(webhook, circuit)


@router.post(
    "/webhooks/{webhookid}/rotate-secret",
    response_model=RotatedSecretItem,
    tags=["hookline"],
    responses=_responses,
)
async def rotate_secret(
    webhookid: uuid.UUID,
    account_id: AccountId,
    runtime: RuntimeDep,
    item: RotateSecretItem | None = None,
) -> RotatedSecretItem:
    """Replace the signing key; the previous one keeps signing for ``overlap_seconds``
    (``webhook-signature`` then carries both). A generated secret is returned once, here."""
    item = item or RotateSecretItem()
    async with runtime.db.transaction() as conn:
        rotated = await cases.rotate_secret(
            conn,
            runtime.secret_box,
            account_id=account_id,
            webhook_id=webhookid,
            signing_secret=item.signingsecret,
            overlap_seconds=item.overlap_seconds,
            now=runtime.clock.now(),
        )
    shown = WebhookInstanceGetItem.of(rotated.webhook).model_dump()
    return RotatedSecretItem(**shown, signingsecret=rotated.generated_secret)


@router.post(
    "/webhooks/{webhookid}/test",
    response_model=SentTestItem,
    tags=["hookline"],
    responses=_responses,
)
async def test_send(
    webhookid: uuid.UUID, account_id: AccountId, runtime: RuntimeDep
) -> SentTestItem:
    """Send the event type's example body now (header ``x-hookline-test: 1``), signed and
    SSRF-guarded like any delivery; answers the attempt, which is also logged (attempt 0)."""
    attempt = await send_test_event(runtime, account_id=account_id, webhook_id=webhookid)
    return SentTestItem.of(webhookid, attempt)


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


class HeaderItem(BaseModel):
    name: str
    value: str


class PlannedAttemptItem(BaseModel):
    attempt: int
    at: datetime


class AttemptDetailItem(WebhookLogItem):
    """One attempt whole: the log item plus what was sent and what came back."""

    request_headers: list[HeaderItem]
    request_body: str | None = None  # the exact bytes sent (the event's body), as text
    response_headers: list[HeaderItem]
    delivery_status: str | None = None  # where the delivery stands now
    delivery_attempts: int | None = None
    delivery_next_attempt_at: datetime | None = None
    retry_schedule: list[PlannedAttemptItem]  # attempts still planned if every retry fails

    @classmethod
    def of_detail(cls, found: AttemptDetail) -> AttemptDetailItem:
        state = found.delivery
        return cls(
            **WebhookLogItem.of(found.log).model_dump(),
            request_headers=[HeaderItem(name=n, value=v) for n, v in found.request_header_pairs],
            request_body=found.request_text,
            response_headers=[HeaderItem(name=n, value=v) for n, v in found.response_header_pairs],
            delivery_status=state.status if state else None,
            delivery_attempts=state.attempts if state else None,
            delivery_next_attempt_at=state.next_attempt_at if state else None,
            retry_schedule=[PlannedAttemptItem(attempt=p.number, at=p.at) for p in found.ahead],
        )


@router.get(
    "/webhooks/{webhookid}/logs/{webhooklogid}",
    response_model=AttemptDetailItem,
    tags=["hookline"],
    responses=_responses,
)
async def webhook_log(
    webhookid: uuid.UUID,
    webhooklogid: uuid.UUID,
    account_id: AccountId,
    conn: ReadConn,
    runtime: RuntimeDep,
) -> AttemptDetailItem:
    """One attempt whole: request headers (signatures included) and body, response status,
    headers and body excerpt, timing, and the retry schedule ahead."""
    found = await get_attempt(
        conn,
        account_id=account_id,
        webhook_id=webhookid,
        log_id=webhooklogid,
        schedule=runtime.settings.retry_schedule,
    )
    return AttemptDetailItem.of_detail(found)


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
