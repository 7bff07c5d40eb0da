"""POS orders: upserted from connectors (push endpoint or pollers), read and patched per the
contract, and turned into ``pos.order.updated`` / ``pos.order.completed`` events.

An order is keyed by (connection, the POS's order id). A fingerprint of its stored form tells
a real change from a connector re-sending the same order: an unchanged re-upsert writes and
emits nothing. Any change (including the first sighting) emits ``pos.order.updated``; the
first time an order reaches ``completed``/``closed`` it also emits ``pos.order.completed``,
never again for that order. Both are scoped to the connection's integration, so they reach
only POS webhooks registered for it.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from hookline.delivery.emit import EventDraft, emit_draft
from hookline.error_codes import ErrorCode
from hookline.errors import InvalidRequest, NotFound
from hookline.ids import new_id
from hookline.platform.integrations import POS_API
from hookline.platform.pos_schema import POSLocationItem, PushedOrder
from hookline.store.tables import connections, consumers, integrations, pos_locations, pos_orders

OPEN = "open"
DONE_STATES = ("completed", "closed")


@dataclass(frozen=True)
class PosConnection:
    id: uuid.UUID
    account_id: uuid.UUID
    consumer_id: uuid.UUID
    integration_id: int


@dataclass(frozen=True)
class UpsertResult:
    order_id: str
    status: str
    changed: bool  # pos.order.updated was emitted
    completed: bool  # pos.order.completed was emitted


@dataclass(frozen=True)
class Page:
    items: list[dict[str, Any]]
    total: int
    page: int
    size: int


# --- connections -----------------------------------------------------------------------------


async def pos_connections(
    conn: AsyncConnection, account_id: uuid.UUID, consumer_id: uuid.UUID
) -> list[PosConnection]:
    """The consumer's connections on POS integrations (404 for another account's consumer)."""
    await _check_consumer(conn, account_id, consumer_id)
    rows = await conn.execute(
        select(connections.c.id, connections.c.integration_id)
        .join(integrations, integrations.c.id == connections.c.integration_id)
        .where(
            connections.c.consumer_id == consumer_id,
            connections.c.account_id == account_id,
            integrations.c.api == POS_API,
        )
        .order_by(connections.c.created_at, connections.c.id)
    )
    return [PosConnection(row.id, account_id, consumer_id, row.integration_id) for row in rows]


async def resolve_pos_connection(
    conn: AsyncConnection,
    account_id: uuid.UUID,
    consumer_id: uuid.UUID,
    connection_id: uuid.UUID | None,
) -> PosConnection:
    """The named POS connection, or the consumer's only one; 400 when that is ambiguous."""
    found = await pos_connections(conn, account_id, consumer_id)
    if connection_id is not None:
        for item in found:
            if item.id == connection_id:
                return item
        raise InvalidRequest(
            f"Connection {connection_id} is not a POS connection of this consumer",
            error_code=ErrorCode.INVALID_CONNECTION,
        )
    if not found:
        raise InvalidRequest(
            "This consumer has no POS connection", error_code=ErrorCode.NO_POS_CONNECTION
        )
    if len(found) > 1:
        raise InvalidRequest(
            "This consumer has several POS connections: name one in the "
            "x-chift-connectionid header",
            error_code=ErrorCode.AMBIGUOUS_CONNECTION,
        )
    return found[0]


async def pos_connection_by_id(conn: AsyncConnection, connection_id: uuid.UUID) -> PosConnection:
    """For pollers, which start from a connection rather than a request."""
    row = (
        await conn.execute(
            select(
                connections.c.id,
                connections.c.account_id,
                connections.c.consumer_id,
                connections.c.integration_id,
            )
            .join(integrations, integrations.c.id == connections.c.integration_id)
            .where(connections.c.id == connection_id, integrations.c.api == POS_API)
        )
    ).first()
    if row is None:
        raise NotFound(f"POS connection {connection_id} not found")
    return PosConnection(row.id, row.account_id, row.consumer_id, row.integration_id)


# --- upserts ---------------------------------------------------------------------------------


async def upsert_orders(
    conn: AsyncConnection, connection: PosConnection, orders: list[PushedOrder], *, now: datetime
) -> list[UpsertResult]:
    """Store each order and emit what changed, in the caller's transaction."""
    seen: set[str] = set()
    for order in orders:
        if order.id in seen:
            raise InvalidRequest(f"Order {order.id} appears twice in one batch")
        seen.add(order.id)
    return [await _upsert_order(conn, connection, order, now) for order in orders]


async def _upsert_order(
    conn: AsyncConnection, connection: PosConnection, order: PushedOrder, now: datetime
) -> UpsertResult:
    status = order.status or ("closed" if order.closing_date else OPEN)
    if status in DONE_STATES and order.closing_date is None:
        order = order.model_copy(update={"closing_date": now})
    if not order.location_id:
        # A POS that does not name locations has one: the connection itself.
        order = order.model_copy(update={"location_id": str(connection.id)})
    data = order.model_dump(mode="json", exclude={"status"})
    fingerprint = _fingerprint(status, data)
    existing = (
        await conn.execute(
            select(pos_orders).where(
                pos_orders.c.connection_id == connection.id, pos_orders.c.order_id == order.id
            )
        )
    ).first()
    if existing is not None and existing.fingerprint == fingerprint:
        return UpsertResult(order.id, status, changed=False, completed=False)
    completes = status in DONE_STATES and (existing is None or existing.completed_at is None)
    completed_at = (existing.completed_at if existing is not None else None) or (
        now if completes else None
    )
    values = {
        "status": status,
        "location_id": order.location_id,
        "data": data,
        "fingerprint": fingerprint,
        "creation_date": _utc(order.creation_date),
        "completed_at": completed_at,
        "updated_at": now,
    }
    if existing is None:
        await conn.execute(
            insert(pos_orders).values(
                id=new_id(),
                account_id=connection.account_id,
                consumer_id=connection.consumer_id,
                connection_id=connection.id,
                order_id=order.id,
                created_at=now,
                **values,
            )
        )
    else:
        await conn.execute(
            update(pos_orders).where(pos_orders.c.id == existing.id).values(**values)
        )
    await _ensure_location(conn, connection, str(order.location_id), now)
    await _emit(conn, connection, "pos.order.updated", data, now, now)
    if completes:
        await _emit(conn, connection, "pos.order.completed", data, now, order.closing_date or now)
    return UpsertResult(order.id, status, changed=True, completed=completes)


async def update_order(
    conn: AsyncConnection,
    account_id: uuid.UUID,
    consumer_id: uuid.UUID,
    order_id: str,
    *,
    customer_id: str | None,
    now: datetime,
    connection_id: uuid.UUID | None = None,
) -> dict[str, Any]:
    """PATCH: set the order's customer; emits ``pos.order.updated`` only if it changed."""
    row = await _find_order(conn, account_id, consumer_id, order_id, connection_id)
    data = dict(row.data)
    if data.get("customer_id") == customer_id:
        return data
    data["customer_id"] = customer_id
    await conn.execute(
        update(pos_orders)
        .where(pos_orders.c.id == row.id)
        .values(data=data, fingerprint=_fingerprint(row.status, data), updated_at=now)
    )
    connection = await pos_connection_by_id(conn, row.connection_id)
    await _emit(conn, connection, "pos.order.updated", data, now, now)
    return data


async def upsert_locations(
    conn: AsyncConnection,
    connection: PosConnection,
    locations: list[POSLocationItem],
    *,
    now: datetime,
) -> None:
    for location in locations:
        values = {
            "name": location.name,
            "timezone": location.timezone,
            "address": location.address.model_dump(mode="json") if location.address else None,
            "updated_at": now,
        }
        result = await conn.execute(
            update(pos_locations)
            .where(
                pos_locations.c.connection_id == connection.id,
                pos_locations.c.location_id == location.id,
            )
            .values(**values)
        )
        if not result.rowcount:
            await conn.execute(
                insert(pos_locations).values(
                    id=new_id(),
                    account_id=connection.account_id,
                    consumer_id=connection.consumer_id,
                    connection_id=connection.id,
                    location_id=location.id,
                    created_at=now,
                    **values,
                )
            )


async def _ensure_location(
    conn: AsyncConnection, connection: PosConnection, location_id: str, now: datetime
) -> None:
    """A location first seen on an order is listed, named by its id until a connector names
    it."""
    found = (
        await conn.execute(
            select(pos_locations.c.id).where(
                pos_locations.c.connection_id == connection.id,
                pos_locations.c.location_id == location_id,
            )
        )
    ).first()
    if found is None:
        await conn.execute(
            insert(pos_locations).values(
                id=new_id(),
                account_id=connection.account_id,
                consumer_id=connection.consumer_id,
                connection_id=connection.id,
                location_id=location_id,
                name=location_id,
                timezone=None,
                address=None,
                created_at=now,
                updated_at=now,
            )
        )


async def _emit(
    conn: AsyncConnection,
    connection: PosConnection,
    event: str,
    data: dict[str, Any],
    now: datetime,
    at: datetime,
) -> None:
    """``at`` is the moment the event is about (the closing time for ``completed``)."""
    await emit_draft(
        conn,
        EventDraft(
            account_id=connection.account_id,
            event=event,
            consumer_id=connection.consumer_id,
            now=now,
            integration_id=connection.integration_id,
            fields={
                "order_id": data["id"],
                "device_id": data.get("device_id"),
                "customer_id": data.get("customer_id"),
                "location_id": data["location_id"],
                "updated_at": iso(at),
            },
        ),
    )


# --- reads -----------------------------------------------------------------------------------


async def list_orders(
    conn: AsyncConnection,
    account_id: uuid.UUID,
    consumer_id: uuid.UUID,
    *,
    page: int,
    size: int,
    date_from: date | None = None,
    date_to: date | None = None,
    location_id: str | None = None,
    state: str = "all",
    connection_id: uuid.UUID | None = None,
) -> Page:
    await _check_consumer(conn, account_id, consumer_id)
    conditions = [pos_orders.c.consumer_id == consumer_id, pos_orders.c.account_id == account_id]
    if connection_id is not None:
        conditions.append(pos_orders.c.connection_id == connection_id)
    if date_from is not None:
        conditions.append(pos_orders.c.creation_date >= _day_start(date_from))
    if date_to is not None:
        conditions.append(pos_orders.c.creation_date < _day_start(date_to) + timedelta(days=1))
    if location_id:
        conditions.append(pos_orders.c.location_id == location_id)
    if state == "open":
        conditions.append(pos_orders.c.status == OPEN)
    elif state == "closed":
        conditions.append(pos_orders.c.status.in_(DONE_STATES))
    total = (
        await conn.execute(select(func.count()).select_from(pos_orders).where(*conditions))
    ).scalar_one()
    rows = await conn.execute(
        select(pos_orders.c.data)
        .where(*conditions)
        .order_by(pos_orders.c.creation_date.desc(), pos_orders.c.id.desc())
        .limit(size)
        .offset((page - 1) * size)
    )
    return Page([row.data for row in rows], total, page, size)


async def get_order(
    conn: AsyncConnection,
    account_id: uuid.UUID,
    consumer_id: uuid.UUID,
    order_id: str,
    connection_id: uuid.UUID | None = None,
) -> dict[str, Any]:
    return dict((await _find_order(conn, account_id, consumer_id, order_id, connection_id)).data)


async def order_status(
    conn: AsyncConnection, connection_id: uuid.UUID, order_id: str
) -> str | None:
    return (
        await conn.execute(
            select(pos_orders.c.status).where(
                pos_orders.c.connection_id == connection_id, pos_orders.c.order_id == order_id
            )
        )
    ).scalar_one_or_none()


async def list_locations(
    conn: AsyncConnection,
    account_id: uuid.UUID,
    consumer_id: uuid.UUID,
    *,
    page: int,
    size: int,
    connection_id: uuid.UUID | None = None,
) -> Page:
    await _check_consumer(conn, account_id, consumer_id)
    conditions = [
        pos_locations.c.consumer_id == consumer_id,
        pos_locations.c.account_id == account_id,
    ]
    if connection_id is not None:
        conditions.append(pos_locations.c.connection_id == connection_id)
    total = (
        await conn.execute(select(func.count()).select_from(pos_locations).where(*conditions))
    ).scalar_one()
    rows = await conn.execute(
        select(pos_locations)
        .where(*conditions)
        .order_by(pos_locations.c.name, pos_locations.c.id)
        .limit(size)
        .offset((page - 1) * size)
    )
    items = [
        {"id": row.location_id, "name": row.name, "timezone": row.timezone, "address": row.address}
        for row in rows
    ]
    return Page(items, total, page, size)


async def _find_order(
    conn: AsyncConnection,
    account_id: uuid.UUID,
    consumer_id: uuid.UUID,
    order_id: str,
    connection_id: uuid.UUID | None,
) -> Any:
    await _check_consumer(conn, account_id, consumer_id)
    query = (
        select(pos_orders)
        .where(
            pos_orders.c.consumer_id == consumer_id,
            pos_orders.c.account_id == account_id,
            pos_orders.c.order_id == order_id,
        )
        .order_by(pos_orders.c.updated_at.desc())
        .limit(1)
    )
    if connection_id is not None:
        query = query.where(pos_orders.c.connection_id == connection_id)
    row = (await conn.execute(query)).first()
    if row is None:
        raise NotFound(f"Order {order_id} not found", error_code=ErrorCode.ORDER_NOT_FOUND)
    return row


async def _check_consumer(
    conn: AsyncConnection, account_id: uuid.UUID, consumer_id: uuid.UUID
) -> None:
    found = (
        await conn.execute(
            select(consumers.c.id).where(
                consumers.c.id == consumer_id, consumers.c.account_id == account_id
            )
        )
    ).first()
    if found is None:
        raise NotFound(f"Consumer {consumer_id} not found", error_code=ErrorCode.CONSUMER_NOT_FOUND)


# --- small pure helpers ----------------------------------------------------------------------


def _fingerprint(status: str, data: dict[str, Any]) -> str:
    canonical = json.dumps({"status": status, "data": data}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _day_start(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


def iso(moment: datetime) -> str:
    """RFC 3339 in UTC with a ``Z``, as the events carry it."""
    return _utc(moment).isoformat().replace("+00:00", "Z")
