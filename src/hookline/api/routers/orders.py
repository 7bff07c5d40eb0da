"""POS orders and locations: the contract's reads and PATCH, plus a push endpoint for
connectors (hookline extension)."""

from __future__ import annotations

import uuid
from enum import StrEnum
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query
from pydantic import BaseModel

from hookline.api.deps import AccountId, ReadConn, RuntimeDep
from hookline.api.limits import FilterDate, PageQuery
from hookline.error_codes import ErrorCode
from hookline.errors import InvalidRequest
from hookline.platform import orders as use_cases
from hookline.platform.pos_schema import POSLocationItem, POSOrderItem, PushedOrder

router = APIRouter(tags=["Point of Sale"])

ConnectionHeader = Annotated[str | None, Header(alias="x-chift-connectionid")]
PageParam = PageQuery
SizeParam = Annotated[int, Query(ge=1, le=100)]


class States(StrEnum):
    open = "open"
    closed = "closed"
    all = "all"


class ChiftPagePOSOrderItem(BaseModel):
    items: list[POSOrderItem]
    total: int
    page: int
    size: int


class ChiftPagePOSLocationItem(BaseModel):
    items: list[POSLocationItem]
    total: int
    page: int
    size: int


class UpdateOrderItem(BaseModel):
    customer_id: str | None = None


class PushResultItem(BaseModel):
    id: str
    status: str
    changed: bool
    completed: bool


class PushResult(BaseModel):
    connectionid: str
    items: list[PushResultItem]


def _connection_id(value: str | None) -> uuid.UUID | None:
    if value is None or value == "":
        return None
    try:
        return uuid.UUID(value)
    except ValueError:
        raise InvalidRequest(
            "x-chift-connectionid must be a connection id", error_code=ErrorCode.INVALID_CONNECTION
        ) from None


@router.post("/consumers/{consumer_id}/pos/orders", response_model=PushResult)
async def push_orders(
    consumer_id: uuid.UUID,
    body: PushedOrder | list[PushedOrder],
    account_id: AccountId,
    runtime: RuntimeDep,
    connection: ConnectionHeader = None,
) -> dict[str, Any]:
    """hookline extension for connectors: upsert one order or a batch (by order id)."""
    batch = body if isinstance(body, list) else [body]
    if not batch:
        raise InvalidRequest("No order given")
    if len(batch) > 1000:
        raise InvalidRequest("At most 1000 orders per request")
    async with runtime.db.transaction() as conn:
        target = await use_cases.resolve_pos_connection(
            conn, account_id, consumer_id, _connection_id(connection)
        )
        results = await use_cases.upsert_orders(conn, target, batch, now=runtime.clock.now())
    return {
        "connectionid": str(target.id),
        "items": [
            {"id": r.order_id, "status": r.status, "changed": r.changed, "completed": r.completed}
            for r in results
        ],
    }


@router.get("/consumers/{consumer_id}/pos/orders", response_model=ChiftPagePOSOrderItem)
async def get_orders(
    consumer_id: uuid.UUID,
    account_id: AccountId,
    conn: ReadConn,
    page: PageParam = 1,
    size: SizeParam = 50,
    date_from: FilterDate | None = None,
    date_to: FilterDate | None = None,
    location_id: str | None = None,
    state: States = States.all,
    closure_id: str | None = None,
    connection: ConnectionHeader = None,
) -> dict[str, Any]:
    del closure_id  # accepted for compatibility: hookline does not model closures
    found = await use_cases.list_orders(
        conn,
        account_id,
        consumer_id,
        page=page,
        size=size,
        date_from=date_from,
        date_to=date_to,
        location_id=location_id,
        state=state.value,
        connection_id=_connection_id(connection),
    )
    return {"items": found.items, "total": found.total, "page": found.page, "size": found.size}


@router.get("/consumers/{consumer_id}/pos/orders/{order_id}", response_model=POSOrderItem)
async def get_order(
    consumer_id: uuid.UUID,
    order_id: str,
    account_id: AccountId,
    conn: ReadConn,
    connection: ConnectionHeader = None,
) -> dict[str, Any]:
    return await use_cases.get_order(
        conn, account_id, consumer_id, order_id, _connection_id(connection)
    )


@router.patch("/consumers/{consumer_id}/pos/orders/{order_id}", response_model=POSOrderItem)
async def update_order(
    consumer_id: uuid.UUID,
    order_id: str,
    body: UpdateOrderItem,
    account_id: AccountId,
    runtime: RuntimeDep,
    connection: ConnectionHeader = None,
) -> dict[str, Any]:
    async with runtime.db.transaction() as conn:
        return await use_cases.update_order(
            conn,
            account_id,
            consumer_id,
            order_id,
            customer_id=body.customer_id,
            now=runtime.clock.now(),
            connection_id=_connection_id(connection),
        )


@router.get("/consumers/{consumer_id}/pos/locations", response_model=ChiftPagePOSLocationItem)
async def get_locations(
    consumer_id: uuid.UUID,
    account_id: AccountId,
    conn: ReadConn,
    page: PageParam = 1,
    size: SizeParam = 50,
    connection: ConnectionHeader = None,
) -> dict[str, Any]:
    found = await use_cases.list_locations(
        conn,
        account_id,
        consumer_id,
        page=page,
        size=size,
        connection_id=_connection_id(connection),
    )
    return {"items": found.items, "total": found.total, "page": found.page, "size": found.size}
