"""Delivery attempts over time by outcome, for the dashboard's chart.

Bucketed in SQL with a ``CASE`` over precomputed bucket boundaries, so the same query runs on
SQLite and PostgreSQL and only one small row per (bucket, outcome) leaves the database, however
many attempts were logged.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import case, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from hookline.store.statuses import Outcome
from hookline.store.tables import webhook_logs

OUTCOMES = (Outcome.DELIVERED, Outcome.RETRY, Outcome.FAILED)


@dataclass(frozen=True)
class Bucket:
    start: datetime
    delivered: int = 0
    retry: int = 0
    failed: int = 0  # includes attempts that disabled the webhook

    @property
    def total(self) -> int:
        return self.delivered + self.retry + self.failed


async def attempts_over_time(
    conn: AsyncConnection,
    account_id: uuid.UUID,
    *,
    now: datetime,
    buckets: int = 24,
    width: timedelta = timedelta(hours=1),
    webhook_id: uuid.UUID | None = None,
) -> list[Bucket]:
    """``buckets`` consecutive windows of ``width`` ending at ``now``, oldest first."""
    start = now - buckets * width
    edges = [start + (index + 1) * width for index in range(buckets)]
    bucket = case(
        *[(webhook_logs.c.created_at < edge, index) for index, edge in enumerate(edges)],
        else_=buckets - 1,
    ).label("bucket")
    query = (
        select(bucket, webhook_logs.c.outcome, func.count().label("n"))
        .where(
            webhook_logs.c.account_id == account_id,
            webhook_logs.c.created_at >= start,
            webhook_logs.c.created_at <= now,
        )
        .group_by(bucket, webhook_logs.c.outcome)
    )
    if webhook_id is not None:
        query = query.where(webhook_logs.c.webhook_id == webhook_id)
    counts: list[dict[str, int]] = [dict.fromkeys(OUTCOMES, 0) for _ in range(buckets)]
    for row in await conn.execute(query):
        outcome = row.outcome
        if outcome not in (Outcome.DELIVERED, Outcome.RETRY):
            outcome = Outcome.FAILED  # a disabling attempt failed too
        counts[int(row.bucket)][outcome] += int(row.n)
    return [Bucket(start + index * width, **values) for index, values in enumerate(counts)]
