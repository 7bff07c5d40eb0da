"""Rows for delivery tests, written straight to the tables (the webhooks API is not needed),
with events going through the real ``emit`` path."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import insert, select

from hookline.delivery.emit import EmittedEvent, EventDraft, emit_draft
from hookline.ids import new_id
from hookline.runtime import Runtime
from hookline.store.tables import accounts, deliveries, delivery_queue, webhook_logs, webhooks

EVENT = "account.connection.deleted"


async def make_account(rt: Runtime) -> uuid.UUID:
    account_id = new_id()
    async with rt.db.transaction() as conn:
        await conn.execute(
            insert(accounts).values(id=account_id, name="delivery test", created_at=rt.clock.now())
        )
    return account_id


async def make_webhook(
    rt: Runtime,
    account_id: uuid.UUID,
    url: str,
    *,
    secret: str | None = None,
    event: str = EVENT,
    status: str = "active",
) -> uuid.UUID:
    webhook_id = new_id()
    now = rt.clock.now()
    async with rt.db.transaction() as conn:
        await conn.execute(
            insert(webhooks).values(
                id=webhook_id,
                account_id=account_id,
                event=event,
                url=url,
                secret_encrypted=rt.secret_box.encrypt(secret) if secret else None,
                status=status,
                created_at=now,
                updated_at=now,
            )
        )
    return webhook_id


async def emit_event(
    rt: Runtime,
    account_id: uuid.UUID,
    *,
    connectionid: str | None = None,
) -> EmittedEvent:
    async with rt.db.transaction() as conn:
        return await emit_draft(
            conn,
            EventDraft(
                account_id=account_id,
                event=EVENT,
                consumer_id=new_id(),
                fields={"connectionid": connectionid or str(new_id())},
                now=rt.clock.now(),
            ),
        )


async def emit_many(rt: Runtime, account_id: uuid.UUID, n: int) -> None:
    """``n`` events of one account in one transaction (each with its own consumer)."""
    async with rt.db.transaction() as conn:
        for _ in range(n):
            await emit_draft(
                conn,
                EventDraft(
                    account_id=account_id,
                    event=EVENT,
                    consumer_id=new_id(),
                    fields={"connectionid": str(new_id())},
                    now=rt.clock.now(),
                ),
            )


async def logs(rt: Runtime, webhook_id: uuid.UUID) -> list[Any]:
    async with rt.db.read() as conn:
        return (
            await conn.execute(
                select(webhook_logs)
                .where(webhook_logs.c.webhook_id == webhook_id)
                .order_by(webhook_logs.c.attempt, webhook_logs.c.created_at)
            )
        ).all()


async def delivery(rt: Runtime, delivery_id: uuid.UUID) -> Any:
    async with rt.db.read() as conn:
        return (await conn.execute(select(deliveries).where(deliveries.c.id == delivery_id))).one()


async def webhook(rt: Runtime, webhook_id: uuid.UUID) -> Any:
    async with rt.db.read() as conn:
        return (await conn.execute(select(webhooks).where(webhooks.c.id == webhook_id))).one()


async def queued(rt: Runtime) -> list[Any]:
    async with rt.db.read() as conn:
        return (await conn.execute(select(delivery_queue))).all()
