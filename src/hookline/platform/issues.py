"""Consumer issues: repeated failures of one consumer grouped under one key, with their events.

An issue is keyed by (consumer, connection, sync or none, error_code). The first occurrence
opens it (``account.issue.created``); further occurrences while it is open count up
(``account.issue.updated``); it closes automatically when its cause clears or after
``issue_autoclose_days`` without occurrence (``account.issue.closed``). A later occurrence
opens a new issue.

Concurrency: two transactions raising the same key at once must not open two issues. Each
raise first locks its key until its transaction ends (:func:`lock_issue_key`: an advisory
lock on PostgreSQL; SQLite serialises write transactions already), so the second waits for
the first to commit and then finds the open issue.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import and_, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from hookline.delivery.emit import EventDraft, emit_draft
from hookline.error_codes import ErrorCode
from hookline.errors import InvalidRequest, NotFound
from hookline.ids import new_id
from hookline.periodic import Ticked, every
from hookline.platform.statuses import (
    AgentStatus,
    ConnectionStatus,
    ExecutionStatus,
    IssueLevel,
    IssueStatus,
)
from hookline.runtime import Runtime
from hookline.store.issues_sql import lock_issue_key, stale_open_issues
from hookline.store.tables import (
    connections,
    consumer_issues,
    consumers,
    executions,
    integrations,
    issue_occurrences,
    syncs,
)

log = logging.getLogger(__name__)

OPEN, AUTO_CLOSED = IssueStatus.OPEN, IssueStatus.AUTO_CLOSED
LEVELS = tuple(IssueLevel)
CONNECTION_INACTIVE = "CONNECTION_INACTIVE"
AGENT_DOWN = "AGENT_DOWN"
EXECUTION_FAILED = "EXECUTION_FAILED"  # when a runner reports an error without a code
AUTOCLOSE_BATCH = 500


@dataclass(frozen=True)
class Issue:
    id: uuid.UUID
    account_id: uuid.UUID
    consumer_id: uuid.UUID
    connection_id: uuid.UUID
    sync_id: uuid.UUID | None
    flow_id: uuid.UUID | None
    error_code: str
    level: IssueLevel
    status: IssueStatus
    message: str
    context: Any
    occurrences: int
    first_seen: datetime
    last_seen: datetime
    closed_at: datetime | None
    integration_id: int = 0
    integration_name: str = ""

    @property
    def updated_on(self) -> datetime:
        return (
            self.closed_at if self.closed_at and self.closed_at > self.last_seen else self.last_seen
        )


@dataclass(frozen=True)
class Occurrence:
    id: uuid.UUID
    issue_id: uuid.UUID
    execution_id: uuid.UUID | None
    message: str
    context: Any
    created_at: datetime


@dataclass(frozen=True)
class RaisedIssue:
    issue: Issue
    created: bool  # True: a new issue was opened; False: an open one occurred again


# --- raising and closing -------------------------------------------------------------------


async def raise_issue(
    conn: AsyncConnection,
    *,
    account_id: uuid.UUID,
    consumer_id: uuid.UUID,
    connection_id: uuid.UUID,
    error_code: str,
    message: str,
    now: datetime,
    sync_id: uuid.UUID | None = None,
    flow_id: uuid.UUID | None = None,
    level: str = IssueLevel.ERROR,
    context: Any = None,
    execution_id: uuid.UUID | None = None,
) -> RaisedIssue:
    """Record one occurrence: open a new issue or count up the open one with the same key."""
    if level not in LEVELS:
        raise InvalidRequest(f"level must be one of {LEVELS}")
    if not error_code:
        raise InvalidRequest("error_code cannot be empty")
    await lock_issue_key(conn, f"{consumer_id}|{connection_id}|{sync_id}|{error_code}")
    sync_match = (
        consumer_issues.c.sync_id == sync_id
        if sync_id is not None
        else consumer_issues.c.sync_id.is_(None)
    )
    row = (
        await conn.execute(
            select(consumer_issues)
            .where(
                consumer_issues.c.consumer_id == consumer_id,
                consumer_issues.c.connection_id == connection_id,
                sync_match,
                consumer_issues.c.error_code == error_code,
                consumer_issues.c.status == OPEN,
            )
            .limit(1)
        )
    ).first()
    created = True
    if row is not None:
        # Conditional on still being open: the auto-closer does not take the key's lock, and
        # an issue it closed meanwhile must not count up (a new one opens instead).
        counted = await conn.execute(
            update(consumer_issues)
            .where(consumer_issues.c.id == row.id, consumer_issues.c.status == OPEN)
            .values(
                occurrences=consumer_issues.c.occurrences + 1,
                last_seen=now,
                message=message,
                context=context,
                level=level,
                flow_id=flow_id or row.flow_id,
            )
        )
        created = counted.rowcount != 1
        issue_id = row.id
    if created:
        issue_id = new_id()
        await conn.execute(
            insert(consumer_issues).values(
                id=issue_id,
                account_id=account_id,
                consumer_id=consumer_id,
                connection_id=connection_id,
                sync_id=sync_id,
                flow_id=flow_id,
                error_code=error_code,
                level=level,
                status=OPEN,
                message=message,
                context=context,
                occurrences=1,
                first_seen=now,
                last_seen=now,
                closed_at=None,
            )
        )
    await conn.execute(
        insert(issue_occurrences).values(
            id=new_id(),
            issue_id=issue_id,
            message=message,
            context=context,
            execution_id=execution_id,
            created_at=now,
        )
    )
    issue = await _load(conn, issue_id)
    fields = {
        "issue_id": issue.id,
        "connectionid": issue.connection_id,
        "syncid": issue.sync_id,
        "error_code": issue.error_code,
        "issue_status": OPEN,
        "message": issue.message,
        "context": issue.context,
    }
    if created:
        await emit_draft(
            conn,
            EventDraft(
                account_id=account_id,
                event="account.issue.created",
                consumer_id=consumer_id,
                fields=fields,
                now=now,
            ),
        )
    else:
        await emit_draft(
            conn,
            EventDraft(
                account_id=account_id,
                event="account.issue.updated",
                consumer_id=consumer_id,
                fields={**fields, "occurrences": issue.occurrences},
                now=now,
            ),
        )
    return RaisedIssue(issue, created)


async def close_issues(
    conn: AsyncConnection,
    *,
    consumer_id: uuid.UUID,
    now: datetime,
    connection_id: uuid.UUID | None = None,
    sync_id: uuid.UUID | None = None,
    flow_id: uuid.UUID | None = None,
    error_code: str | None = None,
) -> list[Issue]:
    """Auto-close the consumer's open issues that match every given filter; emit ``closed``."""
    conditions = [consumer_issues.c.consumer_id == consumer_id, consumer_issues.c.status == OPEN]
    if connection_id is not None:
        conditions.append(consumer_issues.c.connection_id == connection_id)
    if sync_id is not None:
        conditions.append(consumer_issues.c.sync_id == sync_id)
    if flow_id is not None:
        conditions.append(consumer_issues.c.flow_id == flow_id)
    if error_code is not None:
        conditions.append(consumer_issues.c.error_code == error_code)
    rows = (await conn.execute(select(consumer_issues).where(*conditions))).all()
    return [await _close(conn, row, now) for row in rows]


async def close_stale_issues(
    conn: AsyncConnection, now: datetime, *, days: float = 7.0, limit: int = AUTOCLOSE_BATCH
) -> list[Issue]:
    """Auto-close open issues (all accounts) without an occurrence for ``days`` days."""
    cutoff = now - timedelta(days=days)
    rows = await stale_open_issues(conn, open_status=OPEN, cutoff=cutoff, limit=limit)
    return [await _close(conn, row, now) for row in rows]


async def _close(conn: AsyncConnection, row: Any, now: datetime) -> Issue:
    result = await conn.execute(
        update(consumer_issues)
        .where(consumer_issues.c.id == row.id, consumer_issues.c.status == OPEN)
        .values(status=AUTO_CLOSED, closed_at=now)
    )
    issue = await _load(conn, row.id)
    if result.rowcount:
        await emit_draft(
            conn,
            EventDraft(
                account_id=row.account_id,
                event="account.issue.closed",
                consumer_id=row.consumer_id,
                now=now,
                fields={
                    "issue_id": row.id,
                    "connectionid": row.connection_id,
                    "syncid": row.sync_id,
                    "error_code": row.error_code,
                    "issue_status": AUTO_CLOSED,
                },
            ),
        )
    return issue


# --- hooks for the platform's own transitions ----------------------------------------------


async def execution_finished(
    conn: AsyncConnection,
    *,
    account_id: uuid.UUID,
    consumer_id: uuid.UUID,
    sync_id: uuid.UUID,
    flow_id: uuid.UUID,
    execution_id: uuid.UUID,
    status: str,
    now: datetime,
    error_code: str | None = None,
    message: str | None = None,
) -> None:
    """Called when one consumer's execution ends: an error raises, a success clears the flow's
    issues for that consumer. Without any connection the consumer can have no issue (every
    issue names its connection), so an error is then only logged."""
    if status == ExecutionStatus.SUCCESS:
        await close_issues(conn, consumer_id=consumer_id, sync_id=sync_id, flow_id=flow_id, now=now)
        return
    connection_id = await _main_connection(conn, consumer_id)
    if connection_id is None:
        log.info(
            "execution %s failed for consumer %s, which has no connection: no issue",
            execution_id,
            consumer_id,
        )
        return
    await raise_issue(
        conn,
        account_id=account_id,
        consumer_id=consumer_id,
        connection_id=connection_id,
        sync_id=sync_id,
        flow_id=flow_id,
        error_code=error_code or EXECUTION_FAILED,
        message=message or "The flow execution failed",
        now=now,
        execution_id=execution_id,
        context={"flowid": str(flow_id), "executionid": str(execution_id)},
    )


async def connection_status_changed(
    conn: AsyncConnection,
    *,
    account_id: uuid.UUID,
    consumer_id: uuid.UUID,
    connection_id: uuid.UUID,
    status: str,
    now: datetime,
    message: str | None = None,
) -> None:
    """Called when a connection turns inactive (raise) or active again (close)."""
    await _cause_changed(
        conn,
        account_id=account_id,
        consumer_id=consumer_id,
        connection_id=connection_id,
        error_code=CONNECTION_INACTIVE,
        cleared=status == ConnectionStatus.ACTIVE,
        now=now,
        message=message or "The connection is inactive: its credentials must be renewed",
        context={"status": status},
    )


async def agent_status_changed(
    conn: AsyncConnection,
    *,
    account_id: uuid.UUID,
    consumer_id: uuid.UUID,
    connection_id: uuid.UUID,
    agent_status: str,
    now: datetime,
    last_seen: datetime | None = None,
) -> None:
    """Called when a local agent goes down (raise) or comes back up (close)."""
    await _cause_changed(
        conn,
        account_id=account_id,
        consumer_id=consumer_id,
        connection_id=connection_id,
        error_code=AGENT_DOWN,
        cleared=agent_status == AgentStatus.UP,
        now=now,
        message="The local agent stopped sending heartbeats",
        context={
            "agent_status": AgentStatus.DOWN,
            "agent_last_seen": last_seen.isoformat() if last_seen else None,
        },
    )


async def _cause_changed(
    conn: AsyncConnection,
    *,
    account_id: uuid.UUID,
    consumer_id: uuid.UUID,
    connection_id: uuid.UUID,
    error_code: str,
    cleared: bool,
    now: datetime,
    message: str,
    context: dict[str, Any],
) -> None:
    """A connection-level cause appeared (raise or count an issue) or cleared (close it)."""
    if cleared:
        await close_issues(
            conn,
            consumer_id=consumer_id,
            connection_id=connection_id,
            error_code=error_code,
            now=now,
        )
        return
    await raise_issue(
        conn,
        account_id=account_id,
        consumer_id=consumer_id,
        connection_id=connection_id,
        error_code=error_code,
        now=now,
        message=message,
        context=context,
    )


async def _main_connection(conn: AsyncConnection, consumer_id: uuid.UUID) -> uuid.UUID | None:
    """The connection an execution failure is attached to: the oldest active one, else any."""
    row = (
        await conn.execute(
            select(connections.c.id)
            .where(connections.c.consumer_id == consumer_id)
            .order_by(
                (connections.c.status == ConnectionStatus.ACTIVE).desc(), connections.c.created_at
            )
            .limit(1)
        )
    ).first()
    return row.id if row else None


# --- the connectors' endpoint ----------------------------------------------------------------


async def report_issue(
    conn: AsyncConnection,
    *,
    account_id: uuid.UUID,
    consumer_id: uuid.UUID,
    connection_id: uuid.UUID,
    error_code: str,
    message: str,
    now: datetime,
    sync_id: uuid.UUID | None = None,
    level: str = IssueLevel.ERROR,
    context: Any = None,
    execution_id: uuid.UUID | None = None,
) -> RaisedIssue:
    """An occurrence reported by a connector, checked against the caller's account first."""
    await _check_consumer(conn, account_id, consumer_id)
    owner = (
        await conn.execute(
            select(connections.c.consumer_id).where(connections.c.id == connection_id)
        )
    ).scalar_one_or_none()
    if owner != consumer_id:
        raise NotFound(
            f"Connection {connection_id} not found for this consumer",
            error_code=ErrorCode.CONNECTION_NOT_FOUND,
        )
    if sync_id is not None:
        found = (
            await conn.execute(
                select(syncs.c.id).where(syncs.c.id == sync_id, syncs.c.account_id == account_id)
            )
        ).first()
        if found is None:
            raise NotFound(f"Sync {sync_id} not found", error_code=ErrorCode.SYNC_NOT_FOUND)
    if execution_id is not None:
        await _check_execution(conn, account_id, consumer_id, sync_id, execution_id)
    return await raise_issue(
        conn,
        account_id=account_id,
        consumer_id=consumer_id,
        connection_id=connection_id,
        sync_id=sync_id,
        error_code=error_code,
        message=message,
        now=now,
        level=level,
        context=context,
        execution_id=execution_id,
    )


async def _check_execution(
    conn: AsyncConnection,
    account_id: uuid.UUID,
    consumer_id: uuid.UUID,
    sync_id: uuid.UUID | None,
    execution_id: uuid.UUID,
) -> None:
    """A reported ``executionid`` must be one of the caller's executions: of this consumer (or
    a parent execution, which has none) and of the given sync. Anything else is not found, so
    another account's ids reveal nothing."""
    row = (
        await conn.execute(
            select(executions.c.consumer_id, executions.c.sync_id).where(
                executions.c.id == execution_id, executions.c.account_id == account_id
            )
        )
    ).first()
    if (
        row is None
        or row.consumer_id not in (None, consumer_id)
        or (sync_id is not None and row.sync_id != sync_id)
    ):
        raise NotFound(
            f"Execution {execution_id} not found", error_code=ErrorCode.EXECUTION_NOT_FOUND
        )


# --- reads -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class IssueFilter:
    consumer_id: uuid.UUID | None = None
    created_on: date | None = None
    last_seen_on: date | None = None
    error_code: str | None = None
    status: str = "all"  # open | closed | all
    level: str | None = None


async def list_issues(
    conn: AsyncConnection, account_id: uuid.UUID, filters: IssueFilter
) -> list[Issue]:
    if filters.consumer_id is not None:
        await _check_consumer(conn, account_id, filters.consumer_id)
    query = _issue_query().where(consumer_issues.c.account_id == account_id)
    if filters.consumer_id is not None:
        query = query.where(consumer_issues.c.consumer_id == filters.consumer_id)
    if filters.created_on is not None:
        query = query.where(*_on_day(consumer_issues.c.first_seen, filters.created_on))
    if filters.last_seen_on is not None:
        query = query.where(*_on_day(consumer_issues.c.last_seen, filters.last_seen_on))
    if filters.error_code:
        query = query.where(consumer_issues.c.error_code == filters.error_code)
    if filters.status == "open":
        query = query.where(consumer_issues.c.status == OPEN)
    elif filters.status == "closed":
        query = query.where(consumer_issues.c.status != OPEN)
    if filters.level:
        query = query.where(consumer_issues.c.level == filters.level)
    query = query.order_by(consumer_issues.c.last_seen.desc(), consumer_issues.c.id.desc())
    return [_issue(row) for row in await conn.execute(query)]


async def get_issue(conn: AsyncConnection, account_id: uuid.UUID, issue_id: uuid.UUID) -> Issue:
    row = (
        await conn.execute(
            _issue_query().where(
                consumer_issues.c.id == issue_id, consumer_issues.c.account_id == account_id
            )
        )
    ).first()
    if row is None:
        raise NotFound(f"Issue {issue_id} not found", error_code=ErrorCode.ISSUE_NOT_FOUND)
    return _issue(row)


async def issue_occurrences_of(
    conn: AsyncConnection, issue_id: uuid.UUID, *, last_only: bool = False
) -> list[Occurrence]:
    query = (
        select(issue_occurrences)
        .where(issue_occurrences.c.issue_id == issue_id)
        .order_by(issue_occurrences.c.created_at.desc(), issue_occurrences.c.id.desc())
    )
    if last_only:
        query = query.limit(1)
    return [
        Occurrence(
            id=row.id,
            issue_id=row.issue_id,
            execution_id=row.execution_id,
            message=row.message,
            context=row.context,
            created_at=row.created_at,
        )
        for row in await conn.execute(query)
    ]


async def count_open_issues(conn: AsyncConnection, account_id: uuid.UUID) -> int:
    return (
        await conn.execute(
            select(func.count())
            .select_from(consumer_issues)
            .where(consumer_issues.c.account_id == account_id, consumer_issues.c.status == OPEN)
        )
    ).scalar_one()


def _issue_query() -> Any:
    joined = consumer_issues.outerjoin(
        connections, connections.c.id == consumer_issues.c.connection_id
    ).outerjoin(integrations, integrations.c.id == connections.c.integration_id)
    return select(
        consumer_issues,
        integrations.c.id.label("integration_id"),
        integrations.c.name.label("integration_name"),
    ).select_from(joined)


async def _load(conn: AsyncConnection, issue_id: uuid.UUID) -> Issue:
    return _issue(
        (await conn.execute(_issue_query().where(consumer_issues.c.id == issue_id))).one()
    )


def _issue(row: Any) -> Issue:
    return Issue(
        id=row.id,
        account_id=row.account_id,
        consumer_id=row.consumer_id,
        connection_id=row.connection_id,
        sync_id=row.sync_id,
        flow_id=row.flow_id,
        error_code=row.error_code,
        level=IssueLevel(row.level),
        status=IssueStatus(row.status),
        message=row.message,
        context=row.context,
        occurrences=row.occurrences,
        first_seen=row.first_seen,
        last_seen=row.last_seen,
        closed_at=row.closed_at,
        integration_id=row.integration_id or 0,
        integration_name=row.integration_name or "",
    )


def _on_day(column: Any, day: date) -> tuple[Any, Any]:
    from datetime import UTC, time

    start = datetime.combine(day, time.min, tzinfo=UTC)
    return column >= start, column < start + timedelta(days=1)


async def _check_consumer(
    conn: AsyncConnection, account_id: uuid.UUID, consumer_id: uuid.UUID
) -> None:
    found = (
        await conn.execute(
            select(consumers.c.id).where(
                and_(consumers.c.id == consumer_id, consumers.c.account_id == account_id)
            )
        )
    ).first()
    if found is None:
        raise NotFound(f"Consumer {consumer_id} not found", error_code=ErrorCode.CONSUMER_NOT_FOUND)


# --- the background service ------------------------------------------------------------------


async def run_issue_autoclose(
    runtime: Runtime, stop: asyncio.Event, *, ticked: Ticked = None
) -> None:
    """Close issues that stopped occurring, in batches, every scheduler interval."""

    async def tick() -> None:
        while True:
            async with runtime.db.transaction() as conn:
                closed = await close_stale_issues(
                    conn, runtime.clock.now(), days=runtime.settings.issue_autoclose_days
                )
            if len(closed) < AUTOCLOSE_BATCH:
                return

    await every(
        max(runtime.settings.scheduler_interval_seconds, 1.0),
        stop,
        tick,
        what="issue auto-close",
        ticked=ticked,
    )
