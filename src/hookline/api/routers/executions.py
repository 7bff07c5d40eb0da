"""Triggering flows, reading executions, and the external runners' result endpoint.

``POST /syncs/{syncid}/flows/{flowid}/executions/{executionid}/result`` is a hookline
extension; the other paths are the contract's.
"""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field

from hookline.api.deps import AccountId, ReadConn, RuntimeDep
from hookline.api.limits import PageQuery, UtcDatetime
from hookline.platform import executions as cases
from hookline.platform import runners
from hookline.platform.executions import ExecutionView
from hookline.platform.runners.registry import runners_of
from hookline.platform.syncs import parse_id

router = APIRouter(tags=["Executions"])


def _utc(moment: datetime | None) -> datetime | None:
    """Query dates without an offset are taken as UTC."""
    return moment.replace(tzinfo=UTC) if moment and moment.tzinfo is None else moment


class PostSyncFlowEventData(BaseModel):
    model_config = ConfigDict(extra="allow")
    is_preview: bool = False
    force_restart: bool = False
    start_date: date | None = None
    end_date: date | None = None
    force_from_date: date | None = None
    import_mode: Literal["IMPORT_ONLY_MISSING_DAYS", "REIMPORT_ENTIRE_PERIOD"] | None = None


class PostSyncFlowEvent(BaseModel):
    consumers: list[str] = Field(default_factory=list, max_length=1000)
    data: PostSyncFlowEventData = Field(default_factory=PostSyncFlowEventData)


class TriggerResponse(BaseModel):
    status: str
    message: str
    data: dict[str, Any] | None = None


class ChainExecutionItem(BaseModel):
    id: str
    parentexecutionid: str | None
    start: datetime
    end: datetime | None
    status: str

    @classmethod
    def of(cls, view: ExecutionView) -> ChainExecutionItem:
        return cls(
            id=str(view.id),
            parentexecutionid=str(view.parent_id) if view.parent_id else None,
            start=view.started_at,
            end=view.ended_at,
            status=view.status,
        )


class SyncExecutionItem(ChainExecutionItem):
    consumer_id: str
    flow_id: str

    @classmethod
    def of(cls, view: ExecutionView) -> SyncExecutionItem:
        return cls(
            **ChainExecutionItem.of(view).model_dump(),
            consumer_id=str(view.consumer_id),
            flow_id=str(view.flow_id),
        )


class ChiftPageSyncExecutionItem(BaseModel):
    items: list[SyncExecutionItem]
    total: int
    page: int
    size: int


class ExecutionResult(BaseModel):
    status: Literal["success", "error"]
    message: str | None = Field(default=None, max_length=2000)
    error_code: str | None = Field(default=None, max_length=120)


class ExecutionResultItem(ChainExecutionItem):
    consumer_id: str | None
    message: str | None
    error_code: str | None


@router.post("/syncs/{syncid}/flows/{flowid}/event", response_model=TriggerResponse)
async def trigger_flow(
    syncid: str, flowid: str, body: PostSyncFlowEvent, account_id: AccountId, runtime: RuntimeDep
) -> TriggerResponse:
    """A parent execution plus one execution per target consumer; runs start after commit."""
    sync_id, flow_id = parse_id(syncid, "Sync"), parse_id(flowid, "Flow")
    consumer_ids = [parse_id(value, f"Consumer {value}") for value in body.consumers]
    async with runtime.db.transaction() as conn:
        triggered = await cases.trigger_flow(
            conn,
            account_id=account_id,
            sync_id=sync_id,
            flow_id=flow_id,
            consumer_ids=consumer_ids or None,
            data=body.data.model_dump(mode="json"),
            trigger="event",
            now=runtime.clock.now(),
            timeout_seconds=runtime.settings.execution_timeout_seconds,
            run_lease_seconds=runtime.settings.run_lease_seconds,
            runners=runners_of(runtime),
        )
    assert triggered is not None  # event triggers raise instead
    runners.dispatch(runtime, triggered.jobs)
    return TriggerResponse(
        status="success",
        message="The flow was triggered",
        data={
            "executionid": str(triggered.parent_id),
            "executions": [
                {"consumerid": str(job.consumer_id), "executionid": str(job.execution_id)}
                for job in triggered.jobs
            ],
            "skipped_consumers": [str(cid) for cid in triggered.skipped],
        },
    )


@router.get("/syncs/{syncid}/executions", response_model=ChiftPageSyncExecutionItem)
async def get_sync_executions(
    syncid: uuid.UUID,
    account_id: AccountId,
    conn: ReadConn,
    flowid: uuid.UUID | None = None,
    page: PageQuery = 1,
    size: Annotated[int, Query(ge=1, le=500)] = 50,
    date_to: UtcDatetime | None = None,
    date_from: UtcDatetime | None = None,
) -> ChiftPageSyncExecutionItem:
    items, total = await cases.list_sync_executions(
        conn,
        account_id,
        syncid,
        flow_id=flowid,
        page=page,
        size=size,
        date_from=_utc(date_from),
        date_to=_utc(date_to),
    )
    return ChiftPageSyncExecutionItem(
        items=[SyncExecutionItem.of(item) for item in items], total=total, page=page, size=size
    )


@router.get(
    "/syncs/{syncid}/flows/{flowid}/executions/{executionid}", response_model=ChainExecutionItem
)
async def get_chain_execution(
    syncid: str,
    flowid: str,
    executionid: str,
    account_id: AccountId,
    conn: ReadConn,
    consumerid: str | None = None,
) -> ChainExecutionItem:
    view = await cases.get_chain_execution(
        conn,
        account_id,
        parse_id(syncid, "Sync"),
        parse_id(flowid, "Flow"),
        parse_id(executionid, "Execution"),
        parse_id(consumerid, "Execution") if consumerid else None,
    )
    return ChainExecutionItem.of(view)


@router.post(
    "/syncs/{syncid}/flows/{flowid}/executions/{executionid}/result",
    response_model=ExecutionResultItem,
)
async def report_execution_result(
    syncid: str,
    flowid: str,
    executionid: str,
    body: ExecutionResult,
    account_id: AccountId,
    runtime: RuntimeDep,
) -> ExecutionResultItem:
    """An external runner ends a consumer's execution (409 if it already ended)."""
    async with runtime.db.transaction() as conn:
        view = await cases.report_result(
            conn,
            account_id=account_id,
            sync_id=parse_id(syncid, "Sync"),
            flow_id=parse_id(flowid, "Flow"),
            execution_id=parse_id(executionid, "Execution"),
            status=body.status,
            message=body.message,
            error_code=body.error_code,
            now=runtime.clock.now(),
        )
    return ExecutionResultItem(
        **ChainExecutionItem.of(view).model_dump(),
        consumer_id=str(view.consumer_id),
        message=view.message,
        error_code=view.error_code,
    )


@router.get(
    "/consumers/{consumer_id}/syncs/{syncid}/flows/{flowid}/executions",
    response_model=list[ChainExecutionItem],
)
async def get_consumer_executions(
    consumer_id: uuid.UUID,
    syncid: uuid.UUID,
    flowid: uuid.UUID,
    account_id: AccountId,
    conn: ReadConn,
    date_to: UtcDatetime | None = None,
    date_from: UtcDatetime | None = None,
) -> list[ChainExecutionItem]:
    views = await cases.list_consumer_executions(
        conn,
        account_id,
        consumer_id,
        syncid,
        flowid,
        date_from=_utc(date_from),
        date_to=_utc(date_to),
    )
    return [ChainExecutionItem.of(view) for view in views]
