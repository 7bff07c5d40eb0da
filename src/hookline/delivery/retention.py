"""Retention: events, finished deliveries and attempt logs older than the window are removed.

A periodic service in every ``serve``/``worker`` process purges in short batches (one keyset
step of ``retention_batch_size`` ids per transaction, see :mod:`hookline.store.retention`);
on PostgreSQL a session-level advisory lock lets one process at a time run a pass, the
others skip theirs. ``hookline purge`` runs the same pass on demand.

Pending and retrying deliveries are never removed, nor their events and attempt logs; an
event goes once every delivery of it has gone. Idempotency keys live in the event row, so a
key can be reused once its event has been purged: the deduplication window is the retention.
On SQLite the freed pages are given back to the file system after a pass (incremental
vacuum), so the file stops growing once the window is full.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from hookline.config import Settings
from hookline.delivery import metrics
from hookline.periodic import Ticked, every
from hookline.runtime import Runtime
from hookline.store import retention as store
from hookline.store.capabilities import serves_several_processes, vacuums_incrementally
from hookline.store.db import Database
from hookline.store.retention import Kind

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class PurgeReport:
    """What one pass removed (or, on a dry run, would remove)."""

    before: datetime
    removed: dict[Kind, int] = field(default_factory=dict)
    batches: int = 0
    dry_run: bool = False
    skipped: bool = False  # another process was purging (PostgreSQL)
    freed_pages: int = 0  # SQLite pages given back to the file system

    @property
    def total(self) -> int:
        return sum(self.removed.values())


def retention_window(settings: Settings) -> timedelta | None:
    """How long rows are kept; None keeps them forever (a window of 0)."""
    if settings.retention_seconds is not None:
        seconds = settings.retention_seconds
    else:
        seconds = settings.retention_days * 86400.0
    return timedelta(seconds=seconds) if seconds > 0 else None


async def purge(
    db: Database, *, before: datetime, batch_size: int = 1000, dry_run: bool = False
) -> PurgeReport:
    """Remove (or count, ``dry_run``) what was created before ``before`` and is finished."""
    bound = store.id_bound(before)
    if dry_run:
        async with db.read() as conn:
            counts = {kind: await store.count_expired(conn, kind, bound) for kind in Kind}
        return PurgeReport(before, counts, dry_run=True)
    async with _one_at_a_time(db) as mine:
        if not mine:
            return PurgeReport(before, skipped=True)
        removed = dict.fromkeys(Kind, 0)
        batches = 0
        for kind in Kind:  # children first: an event goes after its deliveries
            after = None
            while True:
                async with db.transaction() as conn:
                    step = await store.purge_step(
                        conn, kind, after=after, bound=bound, limit=max(1, batch_size)
                    )
                if step.last_id is None:
                    break
                batches += 1
                after = step.last_id
                if step.removed:
                    removed[kind] += step.removed
                    metrics.RETENTION_PURGED.labels(table=kind.value).inc(step.removed)
                await asyncio.sleep(0)  # other writers take their turn between batches
        freed = (
            await _give_space_back(db) if vacuums_incrementally(db) and any(removed.values()) else 0
        )
    metrics.RETENTION_LAST_PASS.set(time.time())
    return PurgeReport(before, removed, batches=batches, freed_pages=freed)


@contextlib.asynccontextmanager
async def _one_at_a_time(db: Database) -> AsyncIterator[bool]:
    """Yield whether this process may purge: always on SQLite (one writer at a time
    anyway); on PostgreSQL while it holds the advisory lock, on a connection of its own."""
    if not serves_several_processes(db):
        yield True
        return
    async with db.engine.connect() as conn:
        mine = await store.try_purge_lock(conn, db.schema)
        await conn.commit()  # the lock belongs to the session; no transaction stays open
        try:
            yield mine
        finally:
            if mine:
                try:
                    await store.release_purge_lock(conn, db.schema)
                    await conn.commit()
                except Exception:
                    await conn.invalidate()  # closing the session releases the lock


async def _give_space_back(db: Database) -> int:
    """SQLite: return free pages to the file system, a few thousand per write turn (in
    autocommit: the pragma is its own transaction)."""
    freed = 0
    while True:
        async with db.writer_turn(), db.engine.connect() as conn:
            step = await store.sqlite_incremental_vacuum(conn, store.VACUUM_PAGES_PER_STEP)
        if not step:
            return freed
        freed += step
        await asyncio.sleep(0)


async def run_retention(runtime: Runtime, stop: asyncio.Event, *, ticked: Ticked = None) -> None:
    """The background service: a purge pass every ``retention_interval_seconds``."""
    settings = runtime.settings

    async def tick() -> None:
        window = retention_window(settings)
        if window is None:
            return
        report = await purge(
            runtime.db,
            before=runtime.clock.now() - window,
            batch_size=settings.retention_batch_size,
        )
        if report.total:
            log.info(
                "retention purged %d events, %d deliveries, %d attempt logs in %d batches",
                report.removed[Kind.EVENTS],
                report.removed[Kind.DELIVERIES],
                report.removed[Kind.ATTEMPTS],
                report.batches,
            )

    await every(
        max(1.0, settings.retention_interval_seconds),
        stop,
        tick,
        what="retention purge",
        ticked=ticked,
    )
