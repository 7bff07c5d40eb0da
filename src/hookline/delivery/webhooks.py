"""Webhook subscriptions: create, list, read, change and delete an account's webhooks.

These use cases are shared by the HTTP API and the dashboard, so every rule lives here:
limits, URL shape, catalog membership, one (url, event) per account, and the POS scope.
``delivery`` must not import ``platform``, so callers resolve ``integrationid`` against the
connector catalog themselves and pass what they found as an :class:`IntegrationRef`.

The signing secret is encrypted with the runtime's secret box before it reaches the database
and is never part of a returned value; only ``has_secret`` tells whether one is set.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import delete, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from hookline.catalog import BY_NAME
from hookline.errors import InvalidRequest, NotFound
from hookline.ids import new_id
from hookline.security import SecretBox
from hookline.store.tables import webhooks

MAX_EVENT = 80
MAX_URL = 500
MAX_SECRET = 100
STATUSES = ("active", "inactive")
POS_API = "POS"  # the catalog's name for the Point of Sale unified API


@dataclass(frozen=True)
class IntegrationRef:
    """What the caller found for an ``integrationid`` in the connector catalog."""

    id: int
    is_pos: bool


@dataclass(frozen=True)
class Webhook:
    id: uuid.UUID
    account_id: uuid.UUID
    event: str
    url: str
    status: str
    integration_id: int | None
    created_by: uuid.UUID | None
    created_at: datetime
    updated_at: datetime
    has_secret: bool
    disabled_reason: str | None = None
    failing_since: datetime | None = None


def webhook_from_row(row: Any) -> Webhook:
    return Webhook(
        id=row.id,
        account_id=row.account_id,
        event=row.event,
        url=row.url,
        status=row.status,
        integration_id=row.integration_id,
        created_by=row.created_by,
        created_at=row.created_at,
        updated_at=row.updated_at,
        has_secret=row.secret_encrypted is not None,
        disabled_reason=row.disabled_reason,
        failing_since=row.failing_since,
    )


def validate_url(url: str) -> str:
    """An absolute http(s) URL with a host. Reachability (SSRF) is checked at delivery time."""
    url = url.strip()
    if not url:
        raise InvalidRequest("The url cannot be empty", error_code="ERROR_INVALID_URL")
    if len(url) > MAX_URL:
        raise InvalidRequest(
            f"The url is longer than {MAX_URL} characters", error_code="ERROR_INVALID_URL"
        )
    if any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in url):
        raise InvalidRequest(
            "The url cannot contain spaces or control characters", error_code="ERROR_INVALID_URL"
        )
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError:
        raise InvalidRequest(f"Invalid url: {url!r}", error_code="ERROR_INVALID_URL") from None
    if parts.scheme.lower() not in ("http", "https"):
        raise InvalidRequest(
            "The url must start with http:// or https://", error_code="ERROR_INVALID_URL"
        )
    if not parts.hostname:
        raise InvalidRequest("The url must have a host", error_code="ERROR_INVALID_URL")
    return url


def _check_secret(secret: str) -> None:
    if len(secret) > MAX_SECRET:
        raise InvalidRequest(
            f"The signingsecret is longer than {MAX_SECRET} characters",
            error_code="ERROR_INVALID_SECRET",
        )


def _check_event(event: str) -> str:
    if len(event) > MAX_EVENT or event not in BY_NAME:
        raise InvalidRequest(
            f"Unknown event {event!r}",
            detail="See GET /webhooks/list for the known events",
            error_code="ERROR_UNKNOWN_EVENT",
        )
    return BY_NAME[event].api or ""


async def create_webhook(
    conn: AsyncConnection,
    box: SecretBox,
    *,
    account_id: uuid.UUID,
    event: str,
    url: str,
    now: datetime,
    signing_secret: str | None = None,
    integration_id: int | None = None,
    integration: IntegrationRef | None = None,
    created_by: uuid.UUID | None = None,
) -> Webhook:
    """Subscribe ``url`` to ``event``; the webhook starts ``active``.

    ``integration`` is the caller's lookup of ``integration_id`` (None when it does not
    exist). A POS event needs a POS integration: the webhook then receives only events of
    connections on that integration. Other events take no ``integration_id`` (400), because
    it would not filter anything and silently ignoring it would mislead. An empty secret
    means "no secret" (deliveries are then unsigned).
    """
    api = _check_event(event)
    url = validate_url(url)
    if api == POS_API:
        if integration_id is None:
            raise InvalidRequest(
                f"The event {event} needs an integrationid of a Point of Sale integration",
                error_code="ERROR_INTEGRATION_REQUIRED",
            )
        if integration is None or integration.id != integration_id:
            raise InvalidRequest(
                f"Unknown integrationid {integration_id}", error_code="ERROR_UNKNOWN_INTEGRATION"
            )
        if not integration.is_pos:
            raise InvalidRequest(
                f"The integration {integration_id} is not a Point of Sale integration",
                detail=f"{event} events come only from Point of Sale integrations",
                error_code="ERROR_INVALID_INTEGRATION",
            )
    elif integration_id is not None:
        raise InvalidRequest(
            f"integrationid applies only to events of a unified API; {event} has none",
            error_code="ERROR_INVALID_INTEGRATION",
        )
    if signing_secret is not None:
        _check_secret(signing_secret)
    await _refuse_duplicate(conn, account_id, url, event, exclude=None)
    values = {
        "id": new_id(),
        "account_id": account_id,
        "event": event,
        "url": url,
        "secret_encrypted": box.encrypt(signing_secret) if signing_secret else None,
        "integration_id": integration_id,
        "status": "active",
        "created_by": created_by,
        "created_at": now,
        "updated_at": now,
    }
    await _write(conn, insert(webhooks).values(values), url, event)
    return await get_webhook(conn, account_id=account_id, webhook_id=values["id"])


async def list_webhooks(
    conn: AsyncConnection, *, account_id: uuid.UUID, status: str | None = None
) -> list[Webhook]:
    """The account's webhooks, oldest first; ``status`` keeps only active or inactive ones."""
    query = select(webhooks).where(webhooks.c.account_id == account_id)
    if status is not None:
        if status not in STATUSES:
            raise InvalidRequest(f"Unknown status {status!r}; expected active or inactive")
        query = query.where(webhooks.c.status == status)
    rows = await conn.execute(query.order_by(webhooks.c.created_at, webhooks.c.id))
    return [webhook_from_row(row) for row in rows]


async def get_webhook(
    conn: AsyncConnection, *, account_id: uuid.UUID, webhook_id: uuid.UUID
) -> Webhook:
    """One webhook of the account; another account's id is answered as unknown (404)."""
    row = (
        await conn.execute(
            select(webhooks).where(webhooks.c.id == webhook_id, webhooks.c.account_id == account_id)
        )
    ).first()
    if row is None:
        raise NotFound(f"Webhook {webhook_id} not found", error_code="ERROR_WEBHOOK_NOT_FOUND")
    return webhook_from_row(row)


async def update_webhook(
    conn: AsyncConnection,
    box: SecretBox,
    *,
    account_id: uuid.UUID,
    webhook_id: uuid.UUID,
    now: datetime,
    status: str | None = None,
    url: str | None = None,
    signing_secret: str | None = None,
) -> Webhook:
    """Change status, url and/or signing secret; ``None`` leaves a field as it is.

    An empty ``signing_secret`` removes the secret. Re-activating clears the automatic
    disabling state (reason and failing-since), so the failure clock starts again.
    Event and integration cannot change: delete and re-create the webhook instead.
    """
    current = await get_webhook(conn, account_id=account_id, webhook_id=webhook_id)
    values: dict[str, Any] = {}
    if status is not None and status != current.status:
        if status not in STATUSES:
            raise InvalidRequest(f"Unknown status {status!r}; expected active or inactive")
        values["status"] = status
        if status == "active":
            values.update(disabled_reason=None, failing_since=None)
    if url is not None:
        url = validate_url(url)
        if url != current.url:
            await _refuse_duplicate(conn, account_id, url, current.event, exclude=webhook_id)
            values["url"] = url
    if signing_secret is not None:
        _check_secret(signing_secret)
        values["secret_encrypted"] = box.encrypt(signing_secret) if signing_secret else None
    if not values:
        return current
    values["updated_at"] = now
    statement = update(webhooks).where(webhooks.c.id == webhook_id).values(values)
    await _write(conn, statement, values.get("url", current.url), current.event)
    return await get_webhook(conn, account_id=account_id, webhook_id=webhook_id)


async def delete_webhook(
    conn: AsyncConnection, *, account_id: uuid.UUID, webhook_id: uuid.UUID
) -> None:
    """Delete a webhook with its deliveries, queue rows and logs (foreign-key cascade)."""
    result = await conn.execute(
        delete(webhooks).where(webhooks.c.id == webhook_id, webhooks.c.account_id == account_id)
    )
    if result.rowcount == 0:
        raise NotFound(f"Webhook {webhook_id} not found", error_code="ERROR_WEBHOOK_NOT_FOUND")


async def _refuse_duplicate(
    conn: AsyncConnection,
    account_id: uuid.UUID,
    url: str,
    event: str,
    *,
    exclude: uuid.UUID | None,
) -> None:
    query = select(webhooks.c.id).where(
        webhooks.c.account_id == account_id, webhooks.c.url == url, webhooks.c.event == event
    )
    if exclude is not None:
        query = query.where(webhooks.c.id != exclude)
    if (await conn.execute(query)).first() is not None:
        raise _duplicate(url, event)


async def _write(conn: AsyncConnection, statement: Any, url: str, event: str) -> None:
    """Run an insert/update; a concurrent duplicate that slipped past the check is a 400."""
    try:
        async with conn.begin_nested():
            await conn.execute(statement)
    except IntegrityError:
        raise _duplicate(url, event) from None


def _duplicate(url: str, event: str) -> InvalidRequest:
    return InvalidRequest(
        f"A webhook for {event} to this url already exists",
        detail=url,
        error_code="ERROR_WEBHOOK_DUPLICATE",
    )


async def read_signing_secret(
    conn: AsyncConnection, box: SecretBox, *, webhook_id: uuid.UUID
) -> str | None:
    """The clear signing secret, for signing deliveries only; never put it in a response."""
    value = (
        await conn.execute(select(webhooks.c.secret_encrypted).where(webhooks.c.id == webhook_id))
    ).scalar_one_or_none()
    return box.decrypt(value) if value else None
