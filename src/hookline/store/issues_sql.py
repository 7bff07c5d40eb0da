"""The issue rules' SQL that differs by backend: the raise lock and the auto-closer's batch.

PostgreSQL serialises two raises of one key with a transaction-scoped advisory lock and lets
racing auto-closers split the stale issues (``SKIP LOCKED``); SQLite needs neither, since its
write transactions already hold the database's single write lock (``BEGIN IMMEDIATE``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Row, select, text
from sqlalchemy.ext.asyncio import AsyncConnection

from hookline.store.tables import consumer_issues

_POSTGRESQL = "postgresql"


async def lock_issue_key(conn: AsyncConnection, key: str) -> None:
    """Hold the issue key ``key`` until the transaction ends: a second raise of the same key
    waits for the first to commit, then finds the issue it opened."""
    if conn.dialect.name != _POSTGRESQL:
        return  # SQLite: the write transaction already holds the database's write lock
    digest = hashlib.sha256(f"issue|{key}".encode()).digest()
    lock_id = int.from_bytes(digest[:8], "big", signed=True)
    await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": lock_id})


async def stale_open_issues(
    conn: AsyncConnection, *, open_status: str, cutoff: datetime, limit: int
) -> Sequence[Row[Any]]:
    """Up to ``limit`` open issues last seen at or before ``cutoff``, oldest first; on
    PostgreSQL, rows another auto-closer holds are skipped (it closes them)."""
    query = (
        select(consumer_issues)
        .where(consumer_issues.c.status == open_status, consumer_issues.c.last_seen <= cutoff)
        .order_by(consumer_issues.c.last_seen)
        .limit(limit)
    )
    if conn.dialect.name == _POSTGRESQL:
        query = query.with_for_update(skip_locked=True)
    return (await conn.execute(query)).all()
