"""Consumer issues: the contract's read endpoints plus a report endpoint for connectors."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, Field

from hookline.api.deps import AccountId, ReadConn, RuntimeDep
from hookline.api.limits import FilterDate
from hookline.errors import NotFound
from hookline.platform import issues as use_cases
from hookline.platform.statuses import IssueLevel

router = APIRouter(tags=["Issues"])


class IssueStatus(StrEnum):
    open = "open"
    closed = "closed"
    all = "all"


class ErrorInfo(BaseModel):
    error_code: str
    status: str
    title: str


class IssueItem(BaseModel):
    id: str
    consumer_id: str
    connection_id: str
    integration_id: int
    integration_name: str
    created_on: datetime
    updated_on: datetime
    last_seen: datetime
    error: ErrorInfo
    occurrences: int
    level: IssueLevel


class IssueEvent(BaseModel):
    id: str
    execution_id: str
    created_on: datetime
    context: dict[str, Any] | None = None
    message: str | None = None


class ExtendedIssueItem(IssueItem):
    events: list[IssueEvent] = Field(default_factory=list)


class ReportIssue(BaseModel):
    """hookline extension: what a connector sends to report one occurrence."""

    connectionid: uuid.UUID
    syncid: uuid.UUID | None = None
    executionid: uuid.UUID | None = None
    error_code: str = Field(min_length=1, max_length=120)
    level: IssueLevel = IssueLevel.ERROR
    message: str = Field(min_length=1, max_length=10_000)
    context: dict[str, Any] | None = None


def _item(issue: use_cases.Issue) -> dict[str, Any]:
    return {
        "id": str(issue.id),
        "consumer_id": str(issue.consumer_id),
        "connection_id": str(issue.connection_id),
        "integration_id": issue.integration_id,
        "integration_name": issue.integration_name,
        "created_on": issue.first_seen,
        "updated_on": issue.updated_on,
        "last_seen": issue.last_seen,
        "error": {"error_code": issue.error_code, "status": issue.status, "title": issue.message},
        "occurrences": issue.occurrences,
        "level": issue.level,
    }


def _event(occurrence: use_cases.Occurrence) -> IssueEvent:
    context = occurrence.context
    if context is not None and not isinstance(context, dict):
        context = {"value": context}
    return IssueEvent(
        id=str(occurrence.id),
        execution_id=str(occurrence.execution_id) if occurrence.execution_id else "",
        created_on=occurrence.created_at,
        context=context,
        message=occurrence.message,
    )


def _uuid(value: str, what: str) -> uuid.UUID:
    """Ids are strings in the contract: a malformed one is simply not found."""
    try:
        return uuid.UUID(value)
    except ValueError:
        raise NotFound(f"{what} {value} not found") from None


@router.get("/issues", response_model=list[IssueItem])
async def get_issues(
    account_id: AccountId,
    conn: ReadConn,
    created_on: FilterDate | None = None,
    last_seen_on: FilterDate | None = None,
    error_code: str | None = None,
    status: IssueStatus = IssueStatus.all,
    level: IssueLevel | None = None,
) -> list[dict[str, Any]]:
    found = await use_cases.list_issues(
        conn,
        account_id,
        use_cases.IssueFilter(
            created_on=created_on,
            last_seen_on=last_seen_on,
            error_code=error_code,
            status=status.value,
            level=level.value if level else None,
        ),
    )
    return [_item(issue) for issue in found]


@router.get("/consumers/{consumer_id}/issues", response_model=list[IssueItem])
async def get_issues_by_consumer_id(
    consumer_id: str,
    account_id: AccountId,
    conn: ReadConn,
    created_on: FilterDate | None = None,
    last_seen_on: FilterDate | None = None,
    error_code: str | None = None,
    status: IssueStatus = IssueStatus.all,
    level: IssueLevel | None = None,
) -> list[dict[str, Any]]:
    found = await use_cases.list_issues(
        conn,
        account_id,
        use_cases.IssueFilter(
            consumer_id=_uuid(consumer_id, "Consumer"),
            created_on=created_on,
            last_seen_on=last_seen_on,
            error_code=error_code,
            status=status.value,
            level=level.value if level else None,
        ),
    )
    return [_item(issue) for issue in found]


@router.post("/consumers/{consumer_id}/issues", response_model=ExtendedIssueItem, status_code=201)
async def report_issue(
    consumer_id: str, body: ReportIssue, account_id: AccountId, runtime: RuntimeDep
) -> dict[str, Any]:
    """hookline extension for connectors: report one occurrence of an issue."""
    consumer = _uuid(consumer_id, "Consumer")
    async with runtime.db.transaction() as conn:
        raised = await use_cases.report_issue(
            conn,
            account_id=account_id,
            consumer_id=consumer,
            connection_id=body.connectionid,
            sync_id=body.syncid,
            execution_id=body.executionid,
            error_code=body.error_code,
            level=body.level.value,
            message=body.message,
            context=body.context,
            now=runtime.clock.now(),
        )
        occurrences = await use_cases.issue_occurrences_of(conn, raised.issue.id, last_only=True)
    return {**_item(raised.issue), "events": [_event(item) for item in occurrences]}


@router.get("/issues/{issue_id}", response_model=ExtendedIssueItem)
async def get_issue(
    issue_id: str, account_id: AccountId, conn: ReadConn, last_execution_only: bool = False
) -> dict[str, Any]:
    issue = await use_cases.get_issue(conn, account_id, _uuid(issue_id, "Issue"))
    occurrences = await use_cases.issue_occurrences_of(
        conn, issue.id, last_only=last_execution_only
    )
    return {**_item(issue), "events": [_event(item) for item in occurrences]}
