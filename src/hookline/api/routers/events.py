"""POST /events and POST /events/batch (extensions): producers outside hookline emit
catalog events through them.

The body is read with a hard size limit before it is parsed, so an oversized request costs
at most ``max_event_bytes`` (``max_batch_bytes``) of memory. POS events must name the
integration they come from (``integrationid``, top level, not part of the delivered body):
it is checked here against the connector catalog because ``delivery`` may not import
``platform``.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field
from starlette.requests import ClientDisconnect
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from hookline.api import deps
from hookline.api.deps import AccountId, RuntimeDep
from hookline.catalog import BY_NAME
from hookline.delivery.emit import EventDraft
from hookline.delivery.ingest import (
    BatchItem,
    ingest_batch,
    ingest_event,
    item_problem,
    prepare_batch,
    split_request,
)
from hookline.errors import InvalidRequest, PayloadTooLarge
from hookline.platform.integrations import Integration, find_integration
from hookline.runtime import Runtime

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


class BatchEventItem(EventPostItem):
    """Documentation only. ``requestid``: this item's idempotency key (as the header of
    ``POST /events``, scoped to the account)."""

    requestid: str | None = Field(default=None, max_length=200)


class EventBatch(BaseModel):
    """Documentation only: the body is parsed by hand (size limit first, 400s after)."""

    events: list[BatchEventItem]


class BatchItemAccepted(BaseModel):
    eventid: uuid.UUID
    deliveries: int
    replayed: bool


class BatchAccepted(BaseModel):
    items: list[BatchItemAccepted]


def _check_declared(declared: str | None, limit: int, what: str) -> None:
    """400 for a ``Content-Length`` that is no number, 413 for one beyond ``limit``."""
    if declared is not None:
        try:
            too_big = int(declared) > limit
        except ValueError:
            raise InvalidRequest("Invalid Content-Length header") from None
        if too_big:
            raise PayloadTooLarge(f"The {what} is larger than {limit} bytes")


async def read_limited_body(request: Request, limit: int, what: str = "event") -> bytes:
    """The raw body, or 413 as soon as the declared or actual size passes ``limit``."""
    _check_declared(request.headers.get("content-length"), limit, what)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"The {what} is larger than {limit} bytes")
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
async def post_event(request: Request, account_id: AccountId, runtime: RuntimeDep) -> Response:
    """Emit one event to the account's matching active webhooks.

    Send ``x-chift-client-requestid`` to make retries safe: a repeat answers the first
    result (with ``X-Idempotent-Replayed: true``) and delivers nothing twice. A W3C
    ``traceparent`` header continues into the delivery attempts when tracing is on.
    """
    tracing = runtime.tracing
    if tracing is None:
        return await _accept_event(request, account_id, runtime)
    with tracing.ingest("POST /events", request.headers), tracing.fanout():
        return await _accept_event(request, account_id, runtime)


async def _accept_event(request: Request, account_id: uuid.UUID, runtime: Runtime) -> Response:
    raw = await read_limited_body(request, runtime.settings.max_event_bytes)
    return await _accept_body(raw, request.headers.get(IDEMPOTENCY_HEADER), account_id, runtime)


async def _accept_body(
    raw: bytes, idempotency_key: str | None, account_id: uuid.UUID, runtime: Runtime
) -> Response:
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
    if integration_id is not None or BY_NAME[event].api == "POS":
        async with runtime.db.read() as conn:
            await _check_integration(conn, event, integration_id)
    draft = EventDraft(
        account_id=account_id,
        event=event,
        consumer_id=consumer_id,
        fields=fields,
        now=runtime.clock.now(),
        integration_id=integration_id,
        idempotency_key=idempotency_key,
    )
    result = await ingest_event(runtime.db.event_sink(), draft)
    headers = _REPLAYED if result.replayed else None
    # The same JSON as EventAccepted.model_dump(mode="json"), as JSONResponse writes it
    # (json.dumps, compact, not ASCII-escaped): built directly, since the body holds only JSON
    # values already and this runs for every event. orjson writes the very same bytes when
    # the body is flat scalars and the result is ASCII without DEL (see encode_body); any
    # other body goes through JSONResponse.
    content = {"eventid": str(result.id), "body": result.body, "deliveries": result.deliveries}
    fast = _fast_json(result.body, content)
    if fast is not None:
        return Response(fast, status_code=202, headers=headers, media_type="application/json")
    try:
        return JSONResponse(content, status_code=202, headers=headers)
    except ValueError:  # NaN or Infinity in the body: pydantic writes them as null
        body = EventAccepted(eventid=result.id, body=result.body, deliveries=result.deliveries)
        return JSONResponse(body.model_dump(mode="json"), status_code=202, headers=headers)


_REPLAYED = {REPLAY_HEADER: "true"}
_SCALARS = frozenset((str, int, bool, type(None)))


def _fast_json(body: dict[str, Any], content: dict[str, Any]) -> bytes | None:
    """``content`` as JSONResponse would write it, by orjson; None when that is not sure."""
    for value in body.values():
        if type(value) not in _SCALARS:
            return None
    try:
        fast = orjson.dumps(content)
    except TypeError:  # an integer beyond 64 bits, a lone surrogate
        return None
    return fast if fast.isascii() and fast.find(b"\x7f") < 0 else None  # (see encode_body)


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


@router.post(
    "/events/batch",
    status_code=202,
    response_model=BatchAccepted,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": EventBatch.model_json_schema()}},
        }
    },
    responses={
        400: {
            "description": "An invalid item (detail names each by index: events[17].status: "
            "...; nothing is accepted) or more than max_batch_events items (ChiftError)"
        },
        409: {"description": "A requestid reused for another event (nothing is accepted)"},
        413: {"description": "Body larger than max_batch_bytes"},
    },
)
async def post_event_batch(
    request: Request, account_id: AccountId, runtime: RuntimeDep
) -> Response:
    """Emit several events in one request, all or nothing, in one transaction.

    Each item is the body of ``POST /events``, plus an optional ``requestid`` (its
    idempotency key: a repeat answers its first ``eventid`` with ``replayed: true`` and
    queues nothing again). Results come in request order.
    """
    tracing = runtime.tracing
    if tracing is None:
        return await _accept_batch(request, account_id, runtime)
    with tracing.ingest("POST /events/batch", request.headers), tracing.fanout():
        return await _accept_batch(request, account_id, runtime)


async def _accept_batch(request: Request, account_id: uuid.UUID, runtime: Runtime) -> Response:
    settings = runtime.settings
    raw = await read_limited_body(request, settings.max_batch_bytes, "batch")
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as error:
        raise InvalidRequest(
            "The body is not valid JSON", detail=str(error), error_code="ERROR_INVALID_BODY"
        ) from None
    if not isinstance(data, dict) or not isinstance(data.get("events"), list) or len(data) != 1:
        raise InvalidRequest(
            'The body must be {"events": [...]}',
            detail="events: required, a list of events (no other field)",
            error_code="ERROR_INVALID_BODY",
        )
    items = data["events"]
    if len(items) > settings.max_batch_events:
        raise InvalidRequest(
            f"A batch holds at most {settings.max_batch_events} events",
            detail=f"events: {len(items)} items",
            error_code="ERROR_TOO_MANY_EVENTS",
        )
    now = runtime.clock.now()
    ready, problems = prepare_batch(
        items, account_id=account_id, now=now, max_event_bytes=settings.max_event_bytes
    )
    problems += await _integration_problems(runtime, ready)
    if problems:
        problems.sort(key=lambda problem: int(problem[7 : problem.index("]")]))
        raise InvalidRequest(
            f"{len({p.split(']', 1)[0] for p in problems})} of {len(items)} events are invalid;"
            " none was accepted",
            detail="; ".join(problems),
            error_code="ERROR_INVALID_BODY",
        )
    results = await ingest_batch(runtime.db.event_sink(), ready) if ready else []
    # orjson writes a uuid.UUID as its canonical string itself (no str() per item); a
    # replayed event's id may be the driver's UUID subclass, which ``default`` writes.
    content = {
        "items": [
            {"eventid": r.id, "deliveries": r.deliveries, "replayed": r.replayed} for r in results
        ]
    }
    body = orjson.dumps(content, default=str)
    return Response(body, status_code=202, media_type="application/json")


async def _integration_problems(runtime: Runtime, items: list[BatchItem]) -> list[str]:
    """The integration checks of POST /events for every item, with one lookup per distinct
    integration."""
    wanted = {item.integration_id for item in items if item.integration_id is not None}
    known: dict[int, Integration | None] = {}
    if wanted:
        async with runtime.db.read() as conn:
            for integration_id in sorted(wanted):
                known[integration_id] = await find_integration(conn, integration_id)
    problems: list[str] = []
    for item in items:
        problem = _integration_problem(item.event, item.integration_id, known)
        if problem:
            problems.append(item_problem(item.position, f"integrationid: {problem}"))
    return problems


def _integration_problem(
    event: str, integration_id: int | None, known: dict[int, Integration | None]
) -> str | None:
    is_pos_event = BY_NAME[event].api == "POS"
    if integration_id is None:
        return "required for POS events" if is_pos_event else None
    integration = known[integration_id]
    if integration is None:
        return f"unknown integration {integration_id}"
    if is_pos_event and not integration.is_pos:
        return f"{integration_id} is not a Point of Sale integration"
    return None


async def lean_post_event(request: Request) -> Response:
    """``POST /events`` without FastAPI's per-request machinery (dependency solving, its
    request wrapper), mounted ahead of the documented route above, which stays in the
    OpenAPI description. The bearer check is that of the route's dependencies
    (:func:`hookline.api.deps.bearer_account`), and errors go through the same application
    handlers, so answers are byte for byte those of the documented route.

    The app (:class:`hookline.api.app.HooklineApp`) normally serves ``POST /events`` with
    :func:`serve_post_event`, the same steps without a Request, around its middleware."""
    runtime = request.app.state.runtime
    account_id = deps.bearer_account(runtime, request.headers.get("authorization"))
    return await post_event(request, account_id, runtime)


async def serve_post_event(scope: Scope, receive: Receive, send: Send) -> None:
    """:func:`lean_post_event` as a plain ASGI app: the headers it needs in one pass over
    the request's, the body straight from ``receive``. With tracing on, the Request way."""
    runtime: Runtime = scope["app"].state.runtime
    if runtime.tracing is not None:
        response = await lean_post_event(Request(scope, receive))
        await response(scope, receive, send)
        return
    authorization = declared = idempotency_key = None
    for name, value in scope["headers"]:
        # The first of each, as Starlette's Headers.get answers.
        if name == b"authorization":
            if authorization is None:
                authorization = value.decode("latin-1")
        elif name == b"content-length":
            if declared is None:
                declared = value.decode("latin-1")
        elif name == _IDEMPOTENCY_NAME and idempotency_key is None:
            idempotency_key = value.decode("latin-1")
    account_id = deps.bearer_account(runtime, authorization)
    raw = await _receive_limited(receive, declared, runtime.settings.max_event_bytes)
    response = await _accept_body(raw, idempotency_key, account_id, runtime)
    await response(scope, receive, send)


_IDEMPOTENCY_NAME = IDEMPOTENCY_HEADER.encode()


async def _receive_limited(
    receive: Receive, declared: str | None, limit: int, what: str = "event"
) -> bytes:
    """:func:`read_limited_body` from ``receive`` (as Starlette's ``Request.stream``)."""
    _check_declared(declared, limit, what)
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.request":
            chunk = message.get("body", b"")
            if chunk:
                size += len(chunk)
                if size > limit:
                    raise PayloadTooLarge(f"The {what} is larger than {limit} bytes")
                chunks.append(chunk)
            if not message.get("more_body", False):
                break
        elif message["type"] == "http.disconnect":
            raise ClientDisconnect()
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


# First in the router: a request for POST /events matches this route before the documented one.
router.routes.insert(
    0, Route("/events", lean_post_event, methods=["POST"], include_in_schema=False)
)
