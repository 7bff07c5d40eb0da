"""Dashboard pages for debugging a delivery: find an event, see where it went and each attempt
whole, send it again to one webhook; and the styled 404 for unknown dashboard URLs.

Included after :mod:`hookline.ui.routes` (its catch-all 404 must come last) and built on its
session, CSRF and rendering helpers.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from hookline.catalog import EVENT_TYPES
from hookline.delivery import event_log
from hookline.delivery import redeliver as redeliver_cases
from hookline.delivery.attempts import get_attempt
from hookline.delivery.event_log import EventFilter
from hookline.error_codes import ErrorCode
from hookline.errors import HooklineError, InvalidRequest
from hookline.ui.routes import (
    PageRoute,
    _failure,
    _parse_id,
    _runtime,
    _since,
    checked_form,
    current_session,
    not_found_page,
    redirect,
    render,
)

router = APIRouter(prefix="/ui", include_in_schema=False, route_class=PageRoute)
EVENTS_PER_PAGE = 50


def _uuid_or_none(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(value.strip())
    except ValueError:
        return None


def _pretty(payload: bytes) -> str:
    try:
        return json.dumps(json.loads(payload), indent=2, ensure_ascii=False)
    except ValueError:
        return payload.decode("utf-8", "replace")


@router.get("/events")
async def events_page(request: Request) -> Response:
    """Search the account's events by id, consumer, connection, type and time (UTC)."""
    session = await current_session(request)
    runtime = _runtime(request)
    params = request.query_params
    form = {
        key: (params.get(key) or "").strip()[:100]
        for key in ("eventid", "consumerid", "connectionid", "event", "since", "until")
    }
    problems: list[str] = []

    def as_id(key: str, label: str) -> uuid.UUID | None:
        if not form[key]:
            return None
        found = _uuid_or_none(form[key])
        if found is None:
            problems.append(f"The {label} must be an id such as 0193…-….")
        return found

    def as_time(key: str, label: str) -> datetime | None:
        if not form[key]:
            return None
        found = _since(form[key])
        if found is None:
            problems.append(f"The {label} time must look like 2026-11-26T10:00 (UTC).")
        return found

    event_id = as_id("eventid", "event id")
    filters = EventFilter(
        event=form["event"] or None,
        consumer_id=as_id("consumerid", "consumer id"),
        connection_id=as_id("connectionid", "connection id"),
        since=as_time("since", "from"),
        until=as_time("until", "to"),
    )
    if event_id is not None and not problems:
        return redirect(f"/ui/events/{event_id}")
    cursor = _uuid_or_none(params.get("cursor") or "")
    page = event_log.EventPage([], None)
    if not problems:
        try:
            async with runtime.db.read() as conn:
                page = await event_log.list_events(
                    conn,
                    account_id=session.account_id,
                    filters=filters,
                    limit=EVENTS_PER_PAGE,
                    cursor=cursor,
                )
        except HooklineError as error:
            problems.append(error.message)
    more = {key: value for key, value in form.items() if value and key != "eventid"}
    return render(
        request,
        "ui_events.html",
        session,
        status_code=400 if problems else 200,
        error=" ".join(problems) or None,
        form=form,
        items=page.items,
        next_query={**more, "cursor": str(page.next_cursor)} if page.next_cursor else None,
        event_types=EVENT_TYPES,
        searched=bool(more) or cursor is not None,
    )


@router.get("/events/{event_id}")
async def event_page(request: Request, event_id: str) -> Response:
    session = await current_session(request)
    event_uuid = _parse_id(event_id)
    try:
        async with _runtime(request).db.read() as conn:
            detail = await event_log.get_event(
                conn, account_id=session.account_id, event_id=event_uuid
            )
    except HooklineError as error:
        return _failure(request, session, error)
    return render(
        request,
        "ui_event.html",
        session,
        event=detail.event,
        body=_pretty(detail.event.payload),
        exact=detail.event.payload.decode("utf-8", "replace"),
        deliveries=detail.deliveries,
    )


@router.post("/events/{event_id}/deliveries/{delivery_id}/resend")
async def event_resend(request: Request, event_id: str, delivery_id: str) -> Response:
    """Send the event again to one of its webhooks: its delivery is queued again (same
    ``webhook-id``) exactly as a redelivery of its latest attempt."""
    session = await current_session(request)
    event_uuid, delivery_uuid = _parse_id(event_id), _parse_id(delivery_id)
    await checked_form(request, session)
    runtime = _runtime(request)
    try:
        async with runtime.db.transaction() as conn:
            detail = await event_log.get_event(
                conn, account_id=session.account_id, event_id=event_uuid
            )
            found = [d for d in detail.deliveries if d.delivery_id == delivery_uuid]
            if not found:
                return await not_found_page(request)
            delivery = found[0]
            if delivery.latest_log_id is None:
                raise InvalidRequest(
                    "This delivery has not been attempted yet: it will be sent shortly",
                    error_code=ErrorCode.NOT_ATTEMPTED,
                )
            await redeliver_cases.redeliver_log(
                conn,
                account_id=session.account_id,
                webhook_id=delivery.webhook_id,
                log_id=delivery.latest_log_id,
                now=runtime.clock.now(),
            )
    except HooklineError as error:
        return _failure(request, session, error)
    return redirect(f"/ui/events/{event_uuid}?notice=resent")


@router.get("/webhooks/{webhook_id}/logs/{log_id}")
async def attempt_page(request: Request, webhook_id: str, log_id: str) -> Response:
    """One attempt whole: request, response, timing, error class and the schedule ahead."""
    session = await current_session(request)
    webhook_uuid, log_uuid = _parse_id(webhook_id), _parse_id(log_id)
    runtime = _runtime(request)
    try:
        async with runtime.db.read() as conn:
            found = await get_attempt(
                conn,
                account_id=session.account_id,
                webhook_id=webhook_uuid,
                log_id=log_uuid,
                schedule=runtime.settings.retry_schedule,
            )
    except HooklineError as error:
        return _failure(request, session, error)
    return render(
        request,
        "ui_attempt.html",
        session,
        attempt=found,
        log=found.log,
        excerpt_bytes=runtime.settings.response_excerpt_bytes,
        pretty_body=_pretty(found.request_body) if found.request_body is not None else None,
    )


@router.api_route("/{rest:path}", methods=["GET", "HEAD"])
async def unknown_page(request: Request, rest: str) -> Any:
    """Keep last: any other dashboard URL is the styled 404."""
    return await not_found_page(request)
