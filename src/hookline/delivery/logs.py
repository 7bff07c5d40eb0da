"""Reading a webhook's attempt log: newest first, paged, filtered by outcome, status or time.

The worker writes one ``webhook_logs`` row per attempt; this module only reads them, always
through the owning webhook so another account's webhook answers 404.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import and_, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from hookline.delivery.webhooks import get_webhook
from hookline.error_codes import ErrorCode
from hookline.errors import InvalidRequest, NotFound
from hookline.store.statuses import Outcome
from hookline.store.tables import webhook_logs

DEFAULT_LIMIT = 50
MAX_LIMIT = 500
OUTCOMES = frozenset(Outcome) - {Outcome.DROPPED}  # a drop is never logged
_STATUS_CLASS = re.compile(r"^([1-5])xx$")
_STATUS_CODE = re.compile(r"^\d{1,3}$")


@dataclass(frozen=True)
class WebhookLog:
    id: uuid.UUID
    webhook_id: uuid.UUID
    delivery_id: uuid.UUID
    event_id: uuid.UUID
    account_id: uuid.UUID
    event: str
    url: str
    integration_id: int | None
    http_status: int  # 0 when no response was received
    attempt: int
    duration_ms: float
    outcome: str  # delivered | retry | failed | disabled
    error_class: str | None
    response_excerpt: str | None
    next_attempt_at: datetime | None
    created_at: datetime
    request_headers: str | None = None  # header block sent, "Name: value" lines (CRLF)
    response_headers: str | None = None  # header block received


@dataclass(frozen=True)
class LogPage:
    items: list[WebhookLog]
    next_cursor: uuid.UUID | None  # the last item's id when more may follow


def log_from_row(row: Any) -> WebhookLog:
    return WebhookLog(
        id=row.id,
        webhook_id=row.webhook_id,
        delivery_id=row.delivery_id,
        event_id=row.event_id,
        account_id=row.account_id,
        event=row.event,
        url=row.url,
        integration_id=row.integration_id,
        http_status=row.http_status,
        attempt=row.attempt,
        duration_ms=row.duration_ms,
        outcome=row.outcome,
        error_class=row.error_class,
        response_excerpt=row.response_excerpt,
        next_attempt_at=row.next_attempt_at,
        created_at=row.created_at,
        request_headers=row.request_headers,
        response_headers=row.response_headers,
    )


def header_pairs(block: str | None) -> list[tuple[str, str]]:
    """A stored header block as (name, value) pairs, in the order they were on the wire."""
    if not block:
        return []
    pairs = []
    for line in block.split("\r\n"):
        name, _, value = line.partition(":")
        pairs.append((name.strip(), value.strip()))
    return pairs


def status_condition(status: str) -> Any:
    """``delivered|retry|failed|disabled`` (the attempt's outcome), ``4xx`` (an HTTP status
    class) or an exact HTTP status such as ``404`` (``0``: no response was received)."""
    value = status.strip().lower()
    if value in OUTCOMES:
        return webhook_logs.c.outcome == value
    match = _STATUS_CLASS.match(value)
    if match:
        low = int(match.group(1)) * 100
        return and_(webhook_logs.c.http_status >= low, webhook_logs.c.http_status < low + 100)
    if _STATUS_CODE.match(value):
        return webhook_logs.c.http_status == int(value)
    raise InvalidRequest(
        f"Unknown status filter {status!r}",
        detail="Use delivered, retry, failed, disabled, a class such as 5xx, or a code",
        error_code=ErrorCode.INVALID_FILTER,
    )


async def list_logs(
    conn: AsyncConnection,
    *,
    account_id: uuid.UUID,
    webhook_id: uuid.UUID,
    limit: int = DEFAULT_LIMIT,
    offset: int = 0,
    cursor: uuid.UUID | None = None,
    status: str | None = None,
    since: datetime | None = None,
) -> LogPage:
    """One page of a webhook's attempts, newest first.

    Page with ``offset`` or, steadier while new attempts arrive, with ``cursor`` = the id of
    the last log of the previous page (``next_cursor``). ``since`` keeps attempts made at or
    after that time (UTC when it has no zone).
    """
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidRequest(f"limit must be between 1 and {MAX_LIMIT}")
    if offset < 0:
        raise InvalidRequest("offset cannot be negative")
    if since is not None and since.tzinfo is None:
        since = since.replace(tzinfo=UTC)  # a time without zone is read as UTC
    await get_webhook(conn, account_id=account_id, webhook_id=webhook_id)
    query = select(webhook_logs).where(
        webhook_logs.c.webhook_id == webhook_id, webhook_logs.c.account_id == account_id
    )
    if status:
        query = query.where(status_condition(status))
    if since is not None:
        query = query.where(webhook_logs.c.created_at >= since)
    if cursor is not None:
        anchor = (
            await conn.execute(
                select(webhook_logs.c.created_at).where(
                    webhook_logs.c.id == cursor, webhook_logs.c.webhook_id == webhook_id
                )
            )
        ).scalar_one_or_none()
        if anchor is None:
            raise NotFound(f"Log {cursor} not found", error_code=ErrorCode.LOG_NOT_FOUND)
        query = query.where(
            or_(
                webhook_logs.c.created_at < anchor,
                and_(webhook_logs.c.created_at == anchor, webhook_logs.c.id < cursor),
            )
        )
    query = query.order_by(webhook_logs.c.created_at.desc(), webhook_logs.c.id.desc())
    rows = (await conn.execute(query.limit(limit).offset(offset))).all()
    items = [log_from_row(row) for row in rows]
    return LogPage(items, items[-1].id if len(items) == limit else None)


async def get_log(
    conn: AsyncConnection, *, account_id: uuid.UUID, webhook_id: uuid.UUID, log_id: uuid.UUID
) -> WebhookLog:
    row = (
        await conn.execute(
            select(webhook_logs).where(
                webhook_logs.c.id == log_id,
                webhook_logs.c.webhook_id == webhook_id,
                webhook_logs.c.account_id == account_id,
            )
        )
    ).first()
    if row is None:
        raise NotFound(f"Log {log_id} not found", error_code=ErrorCode.LOG_NOT_FOUND)
    return log_from_row(row)
