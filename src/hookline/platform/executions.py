"""Executions: a trigger makes a parent execution and one child per target consumer.

A child runs on the flow's runner and ends once, through :func:`finish_execution`, which
emits ``account.flow.executed`` in the same transaction; the parent ends when its last child
does (error if any child failed). At most one running child per (flow, consumer). A runner
only says what its run came to; :func:`apply_outcome` records it.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from hookline.delivery.emit import EventDraft, emit_draft
from hookline.error_codes import ErrorCode
from hookline.errors import Conflict, InvalidRequest, NotFound
from hookline.ids import new_id
from hookline.platform import issues
from hookline.platform.runners.registry import RunnerRegistry, runner_name
from hookline.platform.runners.types import Finished, HandedOff, RunJob, RunOutcome
from hookline.platform.statuses import ExecutionStatus
from hookline.store.tables import consumers, executions, flow_consumers, flows, syncs

if TYPE_CHECKING:
    from hookline.runtime import Runtime

RUNNING, SUCCESS, ERROR = ExecutionStatus.RUNNING, ExecutionStatus.SUCCESS, ExecutionStatus.ERROR
CONSUMER_LIST_LIMIT = 500


@dataclass(frozen=True)
class Triggered:
    parent_id: uuid.UUID
    jobs: list[RunJob]
    skipped: list[uuid.UUID]  # consumers whose previous execution is still running


@dataclass(frozen=True)
class ExecutionView:
    id: uuid.UUID
    parent_id: uuid.UUID | None
    consumer_id: uuid.UUID | None
    flow_id: uuid.UUID
    sync_id: uuid.UUID
    status: ExecutionStatus
    started_at: datetime
    ended_at: datetime | None
    message: str | None
    error_code: str | None


def _view(row: Any) -> ExecutionView:
    return ExecutionView(
        id=row.id,
        parent_id=row.parent_id,
        consumer_id=row.consumer_id,
        flow_id=row.flow_id,
        sync_id=row.sync_id,
        status=ExecutionStatus(row.status),
        started_at=row.started_at,
        ended_at=row.ended_at,
        message=row.message,
        error_code=row.error_code,
    )


# --- starting ----------------------------------------------------------------------------


async def flow_row(
    conn: AsyncConnection,
    account_id: uuid.UUID,
    sync_id: uuid.UUID,
    flow_id: uuid.UUID,
    *,
    key_share: bool = False,
) -> Any:
    """The flow; ``key_share`` takes PostgreSQL's FOR KEY SHARE lock first, in the same order
    as a flow deletion (flow, then its rows), so the two cannot deadlock."""
    query = select(flows).where(
        flows.c.id == flow_id, flows.c.sync_id == sync_id, flows.c.account_id == account_id
    )
    if key_share:
        query = query.with_for_update(read=True, key_share=True)
    row = (await conn.execute(query)).first()
    if row is None:
        raise NotFound("Flow not found", error_code=ErrorCode.FLOW_NOT_FOUND)
    return row


async def _targets(
    conn: AsyncConnection,
    account_id: uuid.UUID,
    flow_id: uuid.UUID,
    consumer_ids: list[uuid.UUID] | None,
) -> list[uuid.UUID]:
    """Consumers with the flow enabled, locked so that concurrent triggers queue up."""
    query = (
        select(flow_consumers.c.consumer_id)
        .where(flow_consumers.c.flow_id == flow_id, flow_consumers.c.enabled.is_(True))
        .order_by(flow_consumers.c.consumer_id)
        .with_for_update()
    )
    if consumer_ids:
        known = set(
            (
                await conn.execute(
                    select(consumers.c.id).where(
                        consumers.c.account_id == account_id, consumers.c.id.in_(consumer_ids)
                    )
                )
            ).scalars()
        )
        missing = [str(cid) for cid in consumer_ids if cid not in known]
        if missing:
            raise NotFound(
                f"Consumer not found: {', '.join(missing)}", error_code=ErrorCode.CONSUMER_NOT_FOUND
            )
        query = query.where(flow_consumers.c.consumer_id.in_(consumer_ids))
    enabled = list((await conn.execute(query)).scalars())
    if consumer_ids:
        disabled = [str(cid) for cid in dict.fromkeys(consumer_ids) if cid not in enabled]
        if disabled:
            raise InvalidRequest(
                f"The flow is not enabled for consumer(s): {', '.join(disabled)}",
                error_code=ErrorCode.FLOW_NOT_ENABLED,
            )
    return enabled


async def trigger_flow(
    conn: AsyncConnection,
    *,
    account_id: uuid.UUID,
    sync_id: uuid.UUID,
    flow_id: uuid.UUID,
    consumer_ids: list[uuid.UUID] | None,
    data: dict[str, Any] | None,
    trigger: str,
    now: datetime,
    timeout_seconds: float,
    run_lease_seconds: float,
    runners: RunnerRegistry | None = None,
) -> Triggered | None:
    """Create the parent and child executions; dispatch ``jobs`` after the commit.

    Targets are the given consumers (each must have the flow enabled) or every consumer
    with it enabled. A consumer whose previous execution is still running is skipped; when
    that leaves nobody, 409. With no consumer enabled at all, 400 for an event trigger and
    ``None`` for a timer (nothing to run this time). ``runners``: the caller's runtime's
    registry (``runners_of(runtime)``); without it, the built-in runners.
    """
    registry = RunnerRegistry() if runners is None else runners
    flow = await flow_row(conn, account_id, sync_id, flow_id, key_share=True)
    targets = await _targets(conn, account_id, flow_id, consumer_ids)
    if not targets:
        if trigger == "timer":
            return None
        raise InvalidRequest(
            "The flow is not enabled for any consumer", error_code=ErrorCode.FLOW_NOT_ENABLED
        )
    busy = set(
        (
            await conn.execute(
                select(executions.c.consumer_id).where(
                    executions.c.flow_id == flow_id,
                    executions.c.status == RUNNING,
                    executions.c.consumer_id.in_(targets),
                )
            )
        ).scalars()
    )
    free = [cid for cid in targets if cid not in busy]
    if not free:
        if trigger == "timer":
            return None
        raise Conflict(
            "An execution of this flow is still running for "
            f"{', '.join(str(cid) for cid in targets)}",
            error_code=ErrorCode.EXECUTION_RUNNING,
        )
    timeout = float(flow.execution.get("timeout_seconds") or timeout_seconds)
    deadline = now + timedelta(seconds=timeout)
    parent_id = new_id()
    base = {
        "account_id": account_id,
        "sync_id": sync_id,
        "flow_id": flow_id,
        "status": RUNNING,
        "trigger": trigger,
        "data": data,
        "message": None,
        "error_code": None,
        "started_at": now,
        "ended_at": None,
    }
    await conn.execute(
        insert(executions).values(
            id=parent_id,
            consumer_id=None,
            parent_id=None,
            deadline_at=None,
            run_lease_until=None,
            **base,
        )
    )
    jobs = [
        RunJob(
            execution_id=new_id(),
            parent_id=parent_id,
            account_id=account_id,
            sync_id=sync_id,
            flow_id=flow_id,
            consumer_id=cid,
            data=data,
            execution=flow.execution,
            runner=runner_name(flow.execution),
            deadline_at=deadline,
        )
        for cid in free
    ]
    # A run this process carries out is leased from the start: if the process dies before
    # (or while) running it, the lease runs out and the scheduler starts it elsewhere.
    resumable = registry.is_resumable(jobs[0].runner)
    lease = now + timedelta(seconds=run_lease_seconds) if resumable else None
    await conn.execute(
        insert(executions),
        [
            {
                "id": job.execution_id,
                "consumer_id": job.consumer_id,
                "parent_id": parent_id,
                "deadline_at": deadline,
                "run_lease_until": lease,
                **base,
            }
            for job in jobs
        ],
    )
    return Triggered(parent_id=parent_id, jobs=jobs, skipped=sorted(busy))


# --- finishing ---------------------------------------------------------------------------


async def finish_execution(
    conn: AsyncConnection,
    execution_id: uuid.UUID,
    *,
    status: ExecutionStatus,
    message: str | None = None,
    error_code: str | None = None,
    now: datetime,
) -> ExecutionView | None:
    """THE place where a child execution ends (runner answer, report, timeout).

    Ends it only if still running (else None: finishing twice is impossible), emits
    ``account.flow.executed`` for its consumer, and ends the parent with its last child.
    The parent row is locked first so siblings finishing at once see each other.
    """
    if status not in (SUCCESS, ERROR):
        raise InvalidRequest("status must be 'success' or 'error'")
    status = ExecutionStatus(status)
    row = (await conn.execute(select(executions).where(executions.c.id == execution_id))).first()
    if row is None or row.parent_id is None:
        return None
    await conn.execute(
        select(executions.c.id).where(executions.c.id == row.parent_id).with_for_update()
    )
    ended = await conn.execute(
        update(executions)
        .where(executions.c.id == execution_id, executions.c.status == RUNNING)
        .values(status=status, message=message, error_code=error_code, ended_at=now)
    )
    if ended.rowcount != 1:
        return None
    await emit_draft(
        conn,
        EventDraft(
            account_id=row.account_id,
            event="account.flow.executed",
            consumer_id=row.consumer_id,
            now=now,
            fields={
                "flowid": row.flow_id,
                "syncid": row.sync_id,
                "status": status,
                "executionid": row.id,
                "parentexecutionid": row.parent_id,
            },
        ),
    )
    await issues.execution_finished(
        conn,
        account_id=row.account_id,
        consumer_id=row.consumer_id,
        sync_id=row.sync_id,
        flow_id=row.flow_id,
        execution_id=row.id,
        status=status,
        now=now,
        error_code=error_code,
        message=message,
    )
    await _end_parent_if_done(conn, row.parent_id, now)
    return ExecutionView(
        id=row.id,
        parent_id=row.parent_id,
        consumer_id=row.consumer_id,
        flow_id=row.flow_id,
        sync_id=row.sync_id,
        status=status,
        started_at=row.started_at,
        ended_at=now,
        message=message,
        error_code=error_code,
    )


async def _end_parent_if_done(conn: AsyncConnection, parent_id: uuid.UUID, now: datetime) -> None:
    rows = await conn.execute(
        select(executions.c.status, func.count())
        .where(executions.c.parent_id == parent_id)
        .group_by(executions.c.status)
    )
    counts: dict[str, int] = {status: count for status, count in rows}
    if counts.get(RUNNING):
        return
    await conn.execute(
        update(executions)
        .where(executions.c.id == parent_id, executions.c.status == RUNNING)
        .values(status=ERROR if counts.get(ERROR) else SUCCESS, ended_at=now)
    )


async def apply_outcome(runtime: Runtime, execution_id: uuid.UUID, outcome: RunOutcome) -> None:
    """Record what a run came to, in its own transaction: end the execution, or drop its lease
    when it goes on elsewhere; ``None`` records nothing."""
    if isinstance(outcome, Finished):
        await finish_now(
            runtime,
            execution_id,
            status=outcome.status,
            message=outcome.message,
            error_code=outcome.error_code,
        )
    elif isinstance(outcome, HandedOff):
        await hand_off(runtime, execution_id)


async def finish_now(
    runtime: Runtime,
    execution_id: uuid.UUID,
    *,
    status: ExecutionStatus,
    message: str | None = None,
    error_code: str | None = None,
) -> ExecutionView | None:
    """finish_execution in its own transaction, for runs carried out outside a request."""
    async with runtime.db.transaction() as conn:
        return await finish_execution(
            conn,
            execution_id,
            status=status,
            message=message,
            error_code=error_code,
            now=runtime.clock.now(),
        )


# --- runs carried out in a process: leases, hand-off, resumption ---------------------------


async def renew_run_lease(runtime: Runtime, execution_id: uuid.UUID) -> None:
    until = runtime.clock.now() + timedelta(seconds=runtime.settings.run_lease_seconds)
    async with runtime.db.transaction() as conn:
        await conn.execute(
            update(executions)
            .where(
                executions.c.id == execution_id,
                executions.c.status == RUNNING,
                executions.c.run_lease_until.is_not(None),
            )
            .values(run_lease_until=until)
        )


async def hand_off(runtime: Runtime, execution_id: uuid.UUID) -> None:
    """The run now happens elsewhere (it reports its result): no process must resume it."""
    async with runtime.db.transaction() as conn:
        await conn.execute(
            update(executions).where(executions.c.id == execution_id).values(run_lease_until=None)
        )


async def abandoned_runs(conn: AsyncConnection, now: datetime, *, limit: int = 100) -> list[Any]:
    """Runs whose process died: their lease ran out before their deadline (a read: most
    scheduler ticks find none and need no write)."""
    return list(
        (
            await conn.execute(
                select(executions, flows.c.execution.label("definition"))
                .join(flows, flows.c.id == executions.c.flow_id)
                .where(
                    executions.c.status == RUNNING,
                    executions.c.run_lease_until < now,
                    executions.c.deadline_at > now,
                    executions.c.consumer_id.is_not(None),
                )
                .order_by(executions.c.run_lease_until)
                .limit(limit)
            )
        ).all()
    )


async def take_over_runs(
    conn: AsyncConnection, rows: list[Any], now: datetime, *, lease_seconds: float
) -> list[RunJob]:
    """Lease ``rows`` (from :func:`abandoned_runs`) to the caller; dispatch the returned jobs
    after the commit. Each is taken by one caller only (a compare-and-set on the lease), and
    is sent again with the same execution id."""
    until = now + timedelta(seconds=lease_seconds)
    jobs: list[RunJob] = []
    for row in rows:
        taken = await conn.execute(
            update(executions)
            .where(
                executions.c.id == row.id,
                executions.c.status == RUNNING,
                executions.c.run_lease_until == row.run_lease_until,
            )
            .values(run_lease_until=until)
        )
        if taken.rowcount != 1:
            continue  # another process took it over first
        jobs.append(
            RunJob(
                execution_id=row.id,
                parent_id=row.parent_id,
                account_id=row.account_id,
                sync_id=row.sync_id,
                flow_id=row.flow_id,
                consumer_id=row.consumer_id,
                data=row.data,
                execution=row.definition,
                runner=runner_name(row.definition),
                deadline_at=row.deadline_at,
            )
        )
    return jobs


async def _execution_row(
    conn: AsyncConnection,
    account_id: uuid.UUID,
    sync_id: uuid.UUID,
    flow_id: uuid.UUID,
    execution_id: uuid.UUID,
) -> Any:
    return (
        await conn.execute(
            select(executions).where(
                executions.c.id == execution_id,
                executions.c.account_id == account_id,
                executions.c.sync_id == sync_id,
                executions.c.flow_id == flow_id,
            )
        )
    ).first()


async def report_result(
    conn: AsyncConnection,
    *,
    account_id: uuid.UUID,
    sync_id: uuid.UUID,
    flow_id: uuid.UUID,
    execution_id: uuid.UUID,
    status: str,
    message: str | None,
    error_code: str | None,
    now: datetime,
) -> ExecutionView:
    """An external runner's report (``status``: the wire's ``success`` or ``error``): 404
    unknown, 400 for a parent, 409 once finished."""
    if status not in (SUCCESS, ERROR):
        raise InvalidRequest("status must be 'success' or 'error'")
    row = await _execution_row(conn, account_id, sync_id, flow_id, execution_id)
    if row is None:
        raise NotFound("Execution not found", error_code=ErrorCode.EXECUTION_NOT_FOUND)
    if row.consumer_id is None:
        raise InvalidRequest(
            "A parent execution ends with its consumers' executions; report "
            "the result of a consumer's execution",
            error_code=ErrorCode.PARENT_EXECUTION,
        )
    finished = await finish_execution(
        conn,
        execution_id,
        status=ExecutionStatus(status),
        message=message,
        error_code=error_code,
        now=now,
    )
    if finished is None:
        raise Conflict(
            "The execution has already finished", error_code=ErrorCode.EXECUTION_FINISHED
        )
    return finished


async def running_children(conn: AsyncConnection, flow_id: uuid.UUID) -> list[uuid.UUID]:
    return list(
        (
            await conn.execute(
                select(executions.c.id)
                .where(
                    executions.c.flow_id == flow_id,
                    executions.c.status == RUNNING,
                    executions.c.consumer_id.is_not(None),
                )
                .order_by(executions.c.id)
            )
        ).scalars()
    )


async def expire_overdue(conn: AsyncConnection, now: datetime, *, limit: int = 200) -> int:
    """End running executions past their deadline as error; returns how many it ended."""
    ids = list(
        (
            await conn.execute(
                select(executions.c.id)
                .where(executions.c.status == RUNNING, executions.c.deadline_at <= now)
                .order_by(executions.c.deadline_at)
                .limit(limit)
            )
        ).scalars()
    )
    ended = 0
    for execution_id in ids:
        if await finish_execution(
            conn,
            execution_id,
            status=ERROR,
            now=now,
            message="The execution did not finish before its deadline",
            error_code=ErrorCode.EXECUTION_TIMEOUT,
        ):
            ended += 1
    return ended


# --- reading -----------------------------------------------------------------------------


async def _require_sync(conn: AsyncConnection, account_id: uuid.UUID, sync_id: uuid.UUID) -> None:
    found = (
        await conn.execute(
            select(syncs.c.id).where(syncs.c.id == sync_id, syncs.c.account_id == account_id)
        )
    ).first()
    if found is None:
        raise NotFound("Sync not found", error_code=ErrorCode.SYNC_NOT_FOUND)


def _dated(query: Any, date_from: datetime | None, date_to: datetime | None) -> Any:
    if date_from is not None:
        query = query.where(executions.c.started_at >= date_from)
    if date_to is not None:
        query = query.where(executions.c.started_at <= date_to)
    return query


async def list_sync_executions(
    conn: AsyncConnection,
    account_id: uuid.UUID,
    sync_id: uuid.UUID,
    *,
    flow_id: uuid.UUID | None,
    page: int,
    size: int,
    date_from: datetime | None,
    date_to: datetime | None,
) -> tuple[list[ExecutionView], int]:
    """Consumers' executions of a sync, newest first, one page at a time."""
    await _require_sync(conn, account_id, sync_id)
    where = [
        executions.c.account_id == account_id,
        executions.c.sync_id == sync_id,
        executions.c.consumer_id.is_not(None),
    ]
    if flow_id is not None:
        where.append(executions.c.flow_id == flow_id)
    total = (
        await conn.execute(
            _dated(select(func.count()).select_from(executions).where(*where), date_from, date_to)
        )
    ).scalar_one()
    rows = (
        await conn.execute(
            _dated(select(executions).where(*where), date_from, date_to)
            .order_by(executions.c.started_at.desc(), executions.c.id.desc())
            .limit(size)
            .offset((page - 1) * size)
        )
    ).all()
    return [_view(row) for row in rows], total


async def get_chain_execution(
    conn: AsyncConnection,
    account_id: uuid.UUID,
    sync_id: uuid.UUID,
    flow_id: uuid.UUID,
    execution_id: uuid.UUID,
    consumer_id: uuid.UUID | None,
) -> ExecutionView:
    """One execution; with ``consumer_id`` and a parent id, that consumer's child of it."""
    row = await _execution_row(conn, account_id, sync_id, flow_id, execution_id)
    if row is not None and consumer_id is not None and row.consumer_id != consumer_id:
        row = (
            (
                await conn.execute(
                    select(executions).where(
                        executions.c.parent_id == execution_id,
                        executions.c.consumer_id == consumer_id,
                    )
                )
            ).first()
            if row.consumer_id is None
            else None
        )
    if row is None:
        raise NotFound("Execution not found", error_code=ErrorCode.EXECUTION_NOT_FOUND)
    return _view(row)


async def list_consumer_executions(
    conn: AsyncConnection,
    account_id: uuid.UUID,
    consumer_id: uuid.UUID,
    sync_id: uuid.UUID,
    flow_id: uuid.UUID,
    *,
    date_from: datetime | None,
    date_to: datetime | None,
) -> list[ExecutionView]:
    """One consumer's executions of a flow, newest first (at most 500)."""
    await flow_row(conn, account_id, sync_id, flow_id)
    found = (
        await conn.execute(
            select(consumers.c.id).where(
                consumers.c.id == consumer_id, consumers.c.account_id == account_id
            )
        )
    ).first()
    if found is None:
        raise NotFound("Consumer not found", error_code=ErrorCode.CONSUMER_NOT_FOUND)
    rows = (
        await conn.execute(
            _dated(
                select(executions).where(
                    executions.c.flow_id == flow_id, executions.c.consumer_id == consumer_id
                ),
                date_from,
                date_to,
            )
            .order_by(executions.c.started_at.desc(), executions.c.id.desc())
            .limit(CONSUMER_LIST_LIMIT)
        )
    ).all()
    return [_view(row) for row in rows]
