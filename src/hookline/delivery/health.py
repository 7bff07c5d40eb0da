"""Health per webhook: attempts and success rate over 24 hours, last success, failing since.

Bounded and indexed, however many attempts were ever logged: the 24-hour counts read only
the window's entries of ``ix_webhook_logs_webhook_created_outcome`` (webhook, time, outcome:
no table access), and the last success is one backward step in ``ix_deliveries_webhook_status``
per webhook (``max(updated_at)`` of its delivered deliveries).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from hookline.delivery.webhooks import Webhook, list_webhooks
from hookline.store.statuses import DeliveryStatus, Outcome, WebhookStatus
from hookline.store.tables import deliveries, webhook_logs, webhooks

WINDOW = timedelta(hours=24)


class HealthState(StrEnum):
    """In the order lists show them: what needs attention first."""

    FAILING = "failing"  # active, and its latest attempt failed
    DISABLED = "disabled"  # switched off by hookline (410 Gone, or failing too long)
    DEGRADED = "degraded"  # active, some attempts of the last 24 hours failed
    HEALTHY = "healthy"
    IDLE = "idle"  # active, no attempt in 24 hours
    INACTIVE = "inactive"  # switched off by its owner


_ORDER = {state: rank for rank, state in enumerate(HealthState)}


@dataclass(frozen=True)
class WebhookHealth:
    webhook: Webhook
    attempts: int  # over the last 24 hours
    delivered: int  # over the last 24 hours
    last_success: datetime | None
    state: HealthState

    @property
    def success_rate(self) -> float | None:
        """Delivered attempts / attempts over 24 hours, as a fraction; None without attempts."""
        return self.delivered / self.attempts if self.attempts else None


def health_state(webhook: Webhook, attempts: int, delivered: int) -> HealthState:
    if webhook.status != WebhookStatus.ACTIVE:
        return HealthState.DISABLED if webhook.disabled_reason else HealthState.INACTIVE
    if webhook.failing_since is not None:
        return HealthState.FAILING
    if not attempts:
        return HealthState.IDLE
    return HealthState.HEALTHY if delivered == attempts else HealthState.DEGRADED


async def webhooks_health(
    conn: AsyncConnection, *, account_id: uuid.UUID, now: datetime
) -> list[WebhookHealth]:
    """The account's webhooks with their health, those needing attention first (failing the
    longest first), then in creation order."""
    hooks = await list_webhooks(conn, account_id=account_id)
    return sorted(await _health(conn, hooks, now), key=_attention)


async def webhook_health(
    conn: AsyncConnection, webhook: Webhook, *, now: datetime
) -> WebhookHealth:
    """The health of one webhook (already read, so already checked to be the caller's)."""
    [found] = await _health(conn, [webhook], now)
    return found


async def _health(
    conn: AsyncConnection, hooks: list[Webhook], now: datetime
) -> list[WebhookHealth]:
    if not hooks:
        return []
    ids = [hook.id for hook in hooks]
    counts: dict[uuid.UUID, list[int]] = {hook_id: [0, 0] for hook_id in ids}
    for row in await conn.execute(counts_statement(ids, now)):
        pair = counts[row.webhook_id]
        pair[0] += int(row.n)
        if row.outcome == Outcome.DELIVERED:
            pair[1] += int(row.n)
    successes = {row.id: row.last for row in await conn.execute(last_success_statement(ids))}
    return [
        WebhookHealth(
            webhook=hook,
            attempts=counts[hook.id][0],
            delivered=counts[hook.id][1],
            last_success=successes.get(hook.id),
            state=health_state(hook, *counts[hook.id]),
        )
        for hook in hooks
    ]


def counts_statement(ids: list[uuid.UUID], now: datetime) -> Select[Any]:
    """Attempts per (webhook, outcome) over the window. The ids are the caller's own webhooks:
    no account filter here, it would need the table's rows instead of the index alone."""
    return (
        select(webhook_logs.c.webhook_id, webhook_logs.c.outcome, func.count().label("n"))
        .where(
            webhook_logs.c.webhook_id.in_(ids),
            webhook_logs.c.created_at >= now - WINDOW,
            webhook_logs.c.created_at <= now,
        )
        .group_by(webhook_logs.c.webhook_id, webhook_logs.c.outcome)
    )


def last_success_statement(ids: list[uuid.UUID]) -> Select[Any]:
    """Per webhook, when its latest delivered delivery was delivered (one index step each)."""
    last = (
        select(func.max(deliveries.c.updated_at))
        .where(
            deliveries.c.webhook_id == webhooks.c.id,
            deliveries.c.status == DeliveryStatus.DELIVERED,
        )
        .scalar_subquery()
    )
    return select(webhooks.c.id, last.label("last")).where(webhooks.c.id.in_(ids))


def _attention(item: WebhookHealth) -> tuple[int, float]:
    since = item.webhook.failing_since
    return (_ORDER[item.state], since.timestamp() if since is not None else 0.0)
