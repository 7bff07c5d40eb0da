"""Ordered delivery per consumer: which queued rows may be claimed, and their keys.

A webhook with ``ordering = 'per_consumer'`` gives each of its queue rows an
``ordering_key``: the event's consumer (``events.consumer_id``, the body's ``consumerid``);
events without one, and every row of other webhooks, have NULL. A keyed row may be claimed
only when no earlier row of the same (webhook, key) is still in the queue: a row leaves the
queue when it is delivered or finally failed, and stays there while it is leased (being sent)
or waiting for a retry, so it holds the later ones of its stream. "Earlier" is the event
order: event ids are UUIDv7, time-ordered and strictly increasing within a process.

Both claims (the fair one in :mod:`hookline.store.queue_link`, the rate-limited one in
:mod:`hookline.store.rate_windows`) add :func:`head_only` to their row condition; for an
unordered row it costs one NULL test. With ``FOR UPDATE SKIP LOCKED`` on PostgreSQL a head
being claimed concurrently by another worker is skipped, but the ``NOT EXISTS`` still sees it
(it reads the statement's snapshot, where the row is queued), so its successor is not taken
by the same claim: one delivery per stream in flight, whatever the number of workers.
"""

from __future__ import annotations

import uuid

from sqlalchemy import ColumnElement, case, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from hookline.store.tables import delivery_queue, events, webhooks

PER_CONSUMER = "per_consumer"

dq = delivery_queue


def head_only(row: str) -> str:
    """SQL: the queue row aliased ``row`` is unordered or the head of its stream."""
    return (
        f"({row}.ordering_key IS NULL OR NOT EXISTS (SELECT 1 FROM delivery_queue o "
        f"WHERE o.webhook_id = {row}.webhook_id AND o.ordering_key = {row}.ordering_key "
        f"AND o.event_id < {row}.event_id))"
    )


def queued_key(webhook_id: uuid.UUID, event_id: uuid.UUID) -> ColumnElement[uuid.UUID | None]:
    """The ``ordering_key`` of a row queued again (redelivery, recovery): the event's
    consumer when the webhook orders its deliveries, else NULL."""
    ordering = select(webhooks.c.ordering).where(webhooks.c.id == webhook_id).scalar_subquery()
    consumer = select(events.c.consumer_id).where(events.c.id == event_id).scalar_subquery()
    return case((ordering.is_not(None), consumer))


async def rekey(conn: AsyncConnection, webhook_id: uuid.UUID, *, ordered: bool) -> None:
    """After a webhook's ordering changed: give its queued rows their keys (or drop them),
    so the new setting applies to what is already waiting too."""
    value: ColumnElement[uuid.UUID | None] | None = None
    if ordered:
        value = select(events.c.consumer_id).where(events.c.id == dq.c.event_id).scalar_subquery()
    await conn.execute(update(dq).where(dq.c.webhook_id == webhook_id).values(ordering_key=value))
