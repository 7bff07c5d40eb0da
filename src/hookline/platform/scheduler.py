"""The flow scheduler: runs timer flows when their cron schedule is due, resumes runs whose
process stopped, ends overdue runs.

Each consumer runs on its own schedule: the ``cronschedule`` it chose when enabling the flow,
else its timer trigger's first one (consumers on an event trigger never run on a timer). A
flow's ``next_run_at`` is the next time any of those (or its triggers' own schedules) fires;
at that time the consumers whose schedule fires then are run together, as one execution.

Every process runs it. A due time is claimed with a compare-and-set on ``flows.next_run_at``
(``UPDATE ... WHERE id = :id AND next_run_at = :due``): exactly one process wins and triggers
the run, in the same transaction that advances the schedule. A schedule that fell behind
(server down) runs once and then moves to the next time after now: no catch-up storm.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from hookline.periodic import Ticked, every
from hookline.platform import cron
from hookline.platform.executions import (
    abandoned_runs,
    expire_overdue,
    take_over_runs,
    trigger_flow,
)
from hookline.platform.runners.registry import runners_of
from hookline.platform.runners.types import RunJob
from hookline.platform.runs import dispatch
from hookline.platform.syncs import timer_consumers, wake_schedules
from hookline.runtime import Runtime
from hookline.store.tables import flows

log = logging.getLogger(__name__)

BATCH = 100


async def claim_due_time(
    conn: AsyncConnection, flow_id: uuid.UUID, due: datetime, next_at: datetime | None
) -> bool:
    """Compare-and-set: True for the one caller that moves ``next_run_at`` off ``due``."""
    claimed = await conn.execute(
        update(flows)
        .where(flows.c.id == flow_id, flows.c.next_run_at == due)
        .values(next_run_at=next_at)
    )
    return claimed.rowcount == 1


async def run_due_flows(runtime: Runtime, now: datetime | None = None) -> list[uuid.UUID]:
    """Trigger every timer flow due at ``now``; returns the parent executions this process
    created (runs are dispatched in the background)."""
    now = now or runtime.clock.now()
    async with runtime.db.read() as conn:
        due = (
            await conn.execute(
                select(
                    flows.c.id,
                    flows.c.account_id,
                    flows.c.sync_id,
                    flows.c.cron,
                    flows.c.triggers,
                    flows.c.next_run_at,
                )
                .where(flows.c.next_run_at.is_not(None), flows.c.next_run_at <= now)
                .order_by(flows.c.next_run_at)
                .limit(BATCH)
            )
        ).all()
    parents: list[uuid.UUID] = []
    for flow in due:
        jobs: list[RunJob] = []
        async with runtime.db.transaction() as conn:
            consumers = await timer_consumers(conn, flow.id, flow.triggers)
            next_at = cron.next_due(wake_schedules(cron.split(flow.cron), consumers), now)
            if not await claim_due_time(conn, flow.id, flow.next_run_at, next_at):
                continue  # another process took this due time
            targets = [
                consumer
                for consumer, schedule in consumers.items()
                if cron.fires_at(schedule, flow.next_run_at)
            ]
            if not targets:
                continue  # a wake-up for schedules no enabled consumer runs on
            triggered = await trigger_flow(
                conn,
                account_id=flow.account_id,
                sync_id=flow.sync_id,
                flow_id=flow.id,
                consumer_ids=targets,
                data={"scheduled_at": flow.next_run_at.isoformat()},
                trigger="timer",
                now=now,
                timeout_seconds=runtime.settings.execution_timeout_seconds,
                run_lease_seconds=runtime.settings.run_lease_seconds,
                runners=runners_of(runtime),
            )
            if triggered is not None:
                jobs = triggered.jobs
                parents.append(triggered.parent_id)
        dispatch(runtime, jobs)
    return parents


async def resume_runs(runtime: Runtime, now: datetime | None = None) -> list[uuid.UUID]:
    """Start again, here, the runs whose process stopped before finishing them."""
    now = now or runtime.clock.now()
    async with runtime.db.read() as conn:
        rows = await abandoned_runs(conn, now)
    if not rows:
        return []
    async with runtime.db.transaction() as conn:
        jobs = await take_over_runs(
            conn, rows, now, lease_seconds=runtime.settings.run_lease_seconds
        )
    if jobs:
        log.warning("resuming %d flow run(s) whose process stopped", len(jobs))
    dispatch(runtime, jobs)
    return [job.execution_id for job in jobs]


async def end_overdue_executions(runtime: Runtime, now: datetime | None = None) -> int:
    async with runtime.db.transaction() as conn:
        return await expire_overdue(conn, now or runtime.clock.now())


async def run_flow_scheduler(
    runtime: Runtime, stop: asyncio.Event, *, ticked: Ticked = None
) -> None:
    """Tick every ``scheduler_interval_seconds`` until ``stop`` is set."""

    async def tick() -> None:
        await run_due_flows(runtime)
        await resume_runs(runtime)
        await end_overdue_executions(runtime)

    await every(
        runtime.settings.scheduler_interval_seconds,
        stop,
        tick,
        what="flow scheduler tick",
        ticked=ticked,
    )
