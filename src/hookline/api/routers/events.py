"""POST /events (extension): producers outside hookline emit catalog events through it.

The body is read with a hard size limit before it is parsed, so an oversized request costs
at most ``max_event_bytes`` of memory. POS events must name the integration they come from
(``integrationid``, top level, not part of the delivered body): it is checked here against
the connector catalog because ``delivery`` may not import ``platform``.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy.exc import IntegrityError

from hookline.api.deps import AccountId, RuntimeDep
from hookline.catalog import BY_NAME
from hookline.delivery.ingest import (
    ingest_event,
    ingest_event_fast,
    replay_after_race,
    split_request,
)
from hookline.errors import InvalidRequest, PayloadTooLarge
from hookline.platform.integrations import find_integration
from hookline.store.event_pg import NeedsGeneralPath

router = APIRouter(tags=["hookline"])

IDEMPOTENCY_HEADER = "x-chift-client-requestid"
REPLAY_HEADER = "X-Idempotent-Replayed"


class EventPostItem(BaseModel):
    """Documentation only: the body is parsed by hand (size limit first, 400s after)."""

    model_config = {"extra": "allow"}

    event: str
    consumerid: uuid.UUID
    integrationid: int | None = None


class EventAccepted(BaseModel):
    eventid: uuid.UUID
    body: dict[str, Any]
    deliveries: int


async def read_limited_body(request: Request, limit: int) -> bytes:
    """The raw body, or 413 as soon as the declared or actual size passes ``limit``."""
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            too_big = int(declared) > limit
        except ValueError:
            raise InvalidRequest("Invalid Content-Length header") from None
        if too_big:
            raise PayloadTooLarge(f"The event is larger than {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"The event is larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


@router.post(
    "/events",
    status_code=202,
    response_model=EventAccepted,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": EventPostItem.model_json_schema()}},
        }
    },
    responses={
        400: {"description": "Invalid body or unknown event (ChiftError)"},
        409: {"description": "Idempotency key reused for another event"},
        413: {"description": "Body larger than max_event_bytes"},
    },
)
async def post_event(request: Request, account_id: AccountId, runtime: RuntimeDep) -> JSONResponse:
    """Emit one event to the account's matching active webhooks.

    Send ``x-chift-client-requestid`` to make retries safe: a repeat answers the first
    result (with ``X-Idempotent-Replayed: true``) and delivers nothing twice. A W3C
    ``traceparent`` header continues into the delivery attempts when tracing is on.
    """
    tracing = runtime.tracing
    if tracing is None:
        return await _accept_event(request, account_id, runtime)
    with tracing.ingest("POST /events", request.headers), tracing.fanout(1):
        return await _accept_event(request, account_id, runtime)


async def _accept_event(request: Request, account_id: uuid.UUID, runtime: Any) -> JSONResponse:
    raw = await read_limited_body(request, runtime.settings.max_event_bytes)
    try:
        data = json.loads(raw)
    except ValueError as error:
        raise InvalidRequest(
            "The body is not valid JSON", detail=str(error), error_code="ERROR_INVALID_BODY"
        ) from None
    integration_id = data.pop("integrationid", None) if isinstance(data, dict) else None
    if integration_id is not None and (
        not isinstance(integration_id, int) or isinstance(integration_id, bool)
    ):
        raise InvalidRequest(
            "integrationid must be an integer",
            detail="integrationid: not an integer",
            error_code="ERROR_INVALID_BODY",
        )
    event, consumer_id, fields = split_request(data)
    key = request.headers.get(IDEMPOTENCY_HEADER)
    request_fields: dict[str, Any] = {
        "account_id": account_id,
        "event": event,
        "consumer_id": consumer_id,
        "fields": fields,
        "integration_id": integration_id,
        "idempotency_key": key,
    }
    writer = runtime.db.event_writer()  # None only where a test forces the general path
    result = None
    checked = False
    try:
        if writer is not None:
            if integration_id is not None or BY_NAME[event].api == "POS":
                async with runtime.db.read() as conn:
                    await _check_integration(conn, event, integration_id)
            checked = True
            with contextlib.suppress(NeedsGeneralPath):
                result = await ingest_event_fast(writer, now=runtime.clock.now(), **request_fields)
        if result is None:  # the general path: one transaction through the pool
            async with runtime.db.transaction() as conn:
                if not checked:
                    await _check_integration(conn, event, integration_id)
                result = await ingest_event(conn, now=runtime.clock.now(), **request_fields)
    except IntegrityError:
        # A concurrent request with the same key committed first: answer with its result.
        if key is None:
            raise
        async with runtime.db.read() as conn:
            replayed = await replay_after_race(conn, **request_fields)
        if replayed is None:
            raise
        result = replayed
    # Built directly (the same JSON as EventAccepted.model_dump(mode="json")): the body holds
    # only JSON values already, and this runs for every event.
    content = {"eventid": str(result.id), "body": result.body, "deliveries": result.deliveries}
    headers = {REPLAY_HEADER: "true"} if result.replayed else None
    try:
        return JSONResponse(content, status_code=202, headers=headers)
    except ValueError:  # NaN or Infinity in the body: pydantic writes them as null
        body = EventAccepted(eventid=result.id, body=result.body, deliveries=result.deliveries)
        return JSONResponse(body.model_dump(mode="json"), status_code=202, headers=headers)


async def _check_integration(conn: Any, event: str, integration_id: int | None) -> None:
    """POS events need a POS integration; any other given integrationid must exist."""
    is_pos_event = BY_NAME[event].api == "POS"
    if integration_id is None:
        if is_pos_event:
            raise InvalidRequest(
                f"{event} events need the integrationid of the Point of Sale integration "
                "they come from",
                error_code="ERROR_INTEGRATION_REQUIRED",
            )
        return
    integration = await find_integration(conn, integration_id)
    if integration is None:
        raise InvalidRequest(
            f"Unknown integrationid {integration_id}", error_code="ERROR_UNKNOWN_INTEGRATION"
        )
    if is_pos_event and not integration.is_pos:
        raise InvalidRequest(
            f"The integration {integration_id} is not a Point of Sale integration",
            error_code="ERROR_INVALID_INTEGRATION",
        )
