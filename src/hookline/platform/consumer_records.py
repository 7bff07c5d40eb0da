"""A consumer's own row: create, read, update. Connections and syncs build on it; the use
cases that span them (deleting a consumer) live in :mod:`hookline.platform.consumers`.

Every function is scoped to one account: another account's consumer is reported as missing
(:class:`NotFound`), never as forbidden, so ids cannot be probed across accounts.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from hookline.error_codes import ErrorCode
from hookline.errors import InvalidRequest, NotFound
from hookline.ids import new_id
from hookline.store.tables import consumers

NAME_MAX = 255
EMAIL_MAX = 80
REFERENCE_MAX = 255
REDIRECT_MAX = 500

_UNSET: Any = object()


@dataclass(frozen=True)
class Consumer:
    id: uuid.UUID
    account_id: uuid.UUID
    name: str
    email: str | None
    internal_reference: str | None
    redirect_url: str | None
    created_at: datetime


def _from_row(row: Any) -> Consumer:
    return Consumer(
        row.id,
        row.account_id,
        row.name,
        row.email,
        row.internal_reference,
        row.redirect_url,
        row.created_at,
    )


def _check(
    name: str | None, email: str | None, reference: str | None, redirect_url: str | None
) -> None:
    """The contract's length limits, enforced here too so the CLI and UI share them."""
    if name is not None and not name.strip():
        raise InvalidRequest("The consumer name cannot be empty")
    for label, value, limit in (
        ("name", name, NAME_MAX),
        ("email", email, EMAIL_MAX),
        ("internal_reference", reference, REFERENCE_MAX),
        ("redirect_url", redirect_url, REDIRECT_MAX),
    ):
        if value is not None and len(value) > limit:
            raise InvalidRequest(f"{label} is longer than {limit} characters")


async def create_consumer(
    conn: AsyncConnection,
    account_id: uuid.UUID,
    *,
    name: str,
    now: datetime,
    email: str | None = None,
    internal_reference: str | None = None,
    redirect_url: str | None = None,
) -> Consumer:
    _check(name, email, internal_reference, redirect_url)
    consumer = Consumer(
        new_id(), account_id, name.strip(), email, internal_reference, redirect_url, now
    )
    await conn.execute(
        insert(consumers).values(
            id=consumer.id,
            account_id=account_id,
            name=consumer.name,
            email=email,
            internal_reference=internal_reference,
            redirect_url=redirect_url,
            created_at=now,
        )
    )
    return consumer


async def find_consumer(
    conn: AsyncConnection, account_id: uuid.UUID, consumer_id: uuid.UUID
) -> Consumer | None:
    row = (
        await conn.execute(
            select(consumers).where(
                consumers.c.id == consumer_id, consumers.c.account_id == account_id
            )
        )
    ).first()
    return _from_row(row) if row else None


async def get_consumer(
    conn: AsyncConnection, account_id: uuid.UUID, consumer_id: uuid.UUID
) -> Consumer:
    """The consumer of that account, or :class:`NotFound` (also for other accounts' ids)."""
    consumer = await find_consumer(conn, account_id, consumer_id)
    if consumer is None:
        raise NotFound(f"Consumer {consumer_id} not found", error_code=ErrorCode.CONSUMER_NOT_FOUND)
    return consumer


async def list_consumers(
    conn: AsyncConnection,
    account_id: uuid.UUID,
    *,
    search: str | None = None,
    internal_reference: str | None = None,
) -> list[Consumer]:
    """``search`` matches name, email or internal reference (case-insensitive substring);
    ``internal_reference`` is an exact match."""
    query = select(consumers).where(consumers.c.account_id == account_id)
    if search:
        pattern = "%" + _escape_like(search.lower()) + "%"
        query = query.where(
            or_(
                *(
                    func.lower(column).like(pattern, escape="\\")
                    for column in (
                        consumers.c.name,
                        consumers.c.email,
                        consumers.c.internal_reference,
                    )
                )
            )
        )
    if internal_reference is not None:
        query = query.where(consumers.c.internal_reference == internal_reference)
    query = query.order_by(consumers.c.created_at, consumers.c.id)
    return [_from_row(row) for row in await conn.execute(query)]


async def update_consumer(
    conn: AsyncConnection,
    account_id: uuid.UUID,
    consumer_id: uuid.UUID,
    *,
    name: str | None = _UNSET,
    email: str | None = _UNSET,
    internal_reference: str | None = _UNSET,
    redirect_url: str | None = _UNSET,
) -> Consumer:
    """Change the given fields; a field left out keeps its value (``None`` clears it,
    except the name, which cannot be cleared)."""
    current = await get_consumer(conn, account_id, consumer_id)
    values: dict[str, Any] = {}
    if name is not _UNSET and name is not None:
        _check(name, None, None, None)
        values["name"] = name.strip()
    for key, value in (
        ("email", email),
        ("internal_reference", internal_reference),
        ("redirect_url", redirect_url),
    ):
        if value is not _UNSET:
            values[key] = value
    _check(None, values.get("email"), values.get("internal_reference"), values.get("redirect_url"))
    if values:
        await conn.execute(update(consumers).where(consumers.c.id == current.id).values(values))
    return await get_consumer(conn, account_id, consumer_id)


def _escape_like(value: str) -> str:
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
