"""Consumers (contract paths): GET|POST /consumers, GET|PATCH|DELETE /consumers/{id}."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Response
from pydantic import BaseModel, ConfigDict, Field

from hookline.api.deps import AccountId, ReadConn, RuntimeDep
from hookline.platform import consumers as use_cases
from hookline.platform.consumers import Consumer

router = APIRouter(tags=["Consumers"])


class ConsumerItem(BaseModel):
    consumerid: uuid.UUID
    name: str = Field(min_length=1)
    email: str | None = None
    internal_reference: str | None = None
    redirect_url: str | None = None
    created_on: datetime | None = None  # extension (the official SDK reads it)

    @classmethod
    def of(cls, consumer: Consumer) -> ConsumerItem:
        return cls(
            consumerid=consumer.id,
            name=consumer.name,
            email=consumer.email,
            internal_reference=consumer.internal_reference,
            redirect_url=consumer.redirect_url,
            created_on=consumer.created_at,
        )


class PostConsumerItem(BaseModel):
    model_config = ConfigDict(extra="ignore")

    name: str = Field(min_length=1, max_length=255)
    email: str | None = Field(default=None, max_length=80)
    internal_reference: str | None = Field(default=None, max_length=255)
    redirect_url: str | None = Field(default=None, max_length=500)


class UpdateConsumerItem(BaseModel):
    model_config = ConfigDict(extra="ignore")

    name: str | None = Field(default=None, max_length=255)
    email: str | None = Field(default=None, max_length=80)
    internal_reference: str | None = Field(default=None, max_length=255)
    redirect_url: str | None = Field(default=None, max_length=500)


@router.get("/consumers", response_model=list[ConsumerItem], operation_id="consumers_get_consumers")
async def get_consumers(
    account_id: AccountId,
    conn: ReadConn,
    search: str | None = None,
    internal_reference: str | None = None,
) -> list[ConsumerItem]:
    found = await use_cases.list_consumers(
        conn, account_id, search=search, internal_reference=internal_reference
    )
    return [ConsumerItem.of(consumer) for consumer in found]


@router.post("/consumers", response_model=ConsumerItem, operation_id="consumers_create_consumer")
async def create_consumer(
    item: PostConsumerItem, account_id: AccountId, runtime: RuntimeDep
) -> ConsumerItem:
    async with runtime.db.transaction() as conn:
        consumer = await use_cases.create_consumer(
            conn,
            account_id,
            name=item.name,
            email=item.email,
            internal_reference=item.internal_reference,
            redirect_url=item.redirect_url,
            now=runtime.clock.now(),
        )
    return ConsumerItem.of(consumer)


@router.get(
    "/consumers/{consumer_id}", response_model=ConsumerItem, operation_id="consumers_get_consumer"
)
async def get_consumer(
    consumer_id: uuid.UUID, account_id: AccountId, conn: ReadConn
) -> ConsumerItem:
    return ConsumerItem.of(await use_cases.get_consumer(conn, account_id, consumer_id))


@router.patch(
    "/consumers/{consumer_id}",
    response_model=ConsumerItem,
    operation_id="consumers_update_consumer",
)
async def update_consumer(
    consumer_id: uuid.UUID, item: UpdateConsumerItem, account_id: AccountId, runtime: RuntimeDep
) -> ConsumerItem:
    changes: dict[str, Any] = {key: getattr(item, key) for key in item.model_fields_set}
    async with runtime.db.transaction() as conn:
        consumer = await use_cases.update_consumer(conn, account_id, consumer_id, **changes)
    return ConsumerItem.of(consumer)


@router.delete(
    "/consumers/{consumer_id}",
    status_code=204,
    response_class=Response,
    operation_id="consumers_delete_consumer",
)
async def delete_consumer(
    consumer_id: uuid.UUID, account_id: AccountId, runtime: RuntimeDep
) -> Response:
    async with runtime.db.transaction() as conn:
        await use_cases.delete_consumer(conn, account_id, consumer_id, now=runtime.clock.now())
    return Response(status_code=204)
