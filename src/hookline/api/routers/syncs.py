"""Syncs, flows and consumers in syncs (contract paths, plus the SDK's flow create/delete).

``POST /syncs/{syncid}/flows`` and ``DELETE /syncs/{syncid}/flows/{flowid}`` are not in the
contract but are what the official SDK calls (``Flow.create`` / ``Flow.delete``).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from hookline.api.deps import AccountId, ReadConn, RuntimeDep
from hookline.api.limits import Int32
from hookline.platform import syncs as cases
from hookline.platform.runners import SECRET_KEY
from hookline.platform.runners.registry import runners_of
from hookline.platform.syncs import ConsumerFlow, ConsumerSync, Flow, Sync, parse_id

router = APIRouter(tags=["Syncs"])


# --- bodies (mirroring the contract's schemas) -------------------------------------------
# Request bodies are checked as strictly as the contract's schemas (enums, required fields,
# key names), so nothing the contract rejects is stored and echoed. Like those schemas they
# let unknown keys through (``extra="allow"``) unless the contract closes the object. The
# read models stay lenient: they describe data already stored.

Conditions = dict[Literal["hideIf"], dict[str, Any]]


class SyncsConnectionItem(BaseModel):
    one_api: Int32 | None = None
    connection_type: Int32 | None = None
    display_order: Int32 = 0
    display_hidden: bool = False


class FieldItemValue(BaseModel):
    model_config = ConfigDict(extra="allow")
    id: str
    label: str


class FieldItem(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: str
    type: Literal["fixed", "api"]
    display_condition: dict[str, Any] | None = None
    values: list[FieldItemValue] | None = Field(default_factory=list)
    api_route: str | None = None
    connection_type: Int32 | None = None


class CreateSyncMappingToFieldItem(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: str
    display_order: Int32 = 0
    challenge_question: str | None = None
    conditions: Conditions | None = None
    source_field: FieldItem
    target_field: FieldItem
    display_delete: bool = False
    logic: dict[str, Any] | None = None
    manual_mapping: bool = False


class CreateSyncMappingItem(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: str
    display_order: Int32 = 0
    challenge_question: str | None = None
    conditions: Conditions | None = None
    sub_mappings: list[CreateSyncMappingToFieldItem] = Field(default_factory=list)


class StoredSyncMappingItem(BaseModel):
    """A mapping as read back (stored data, possibly older than the strict input model)."""

    model_config = ConfigDict(extra="allow")
    name: str
    display_order: int = 0
    challenge_question: str | None = None
    conditions: dict[str, dict[str, Any]] | None = None
    sub_mappings: list[dict[str, Any]] = Field(default_factory=list)


class DatastoreColumn(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: str
    title: str
    type: str
    optional: bool | None = False


class DatastoreDef(BaseModel):
    model_config = ConfigDict(extra="allow")
    columns: list[DatastoreColumn]
    search_column: str | None = None


class FlowDataStoreItem(BaseModel):
    model_config = ConfigDict(extra="allow")
    id: str | None = None
    name: str
    status: Literal["active", "inactive"] | None = "active"
    definition: DatastoreDef


class FlowConfig(BaseModel):
    model_config = ConfigDict(extra="allow")
    definitionFields: list[dict[str, Any]] | None = None
    doorkeyFields: list[dict[str, Any]] | None = None
    customFields: list[dict[str, Any]] | None = None
    datastores: list[FlowDataStoreItem] | None = Field(default_factory=list)


class FlowExecutionChain(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: str


class FlowExecutionCode(BaseModel):
    model_config = ConfigDict(extra="allow")
    code: str


class FlowTrigger(BaseModel):
    id: str = Field(min_length=1, max_length=100)
    type: Literal["timer", "event"]
    cronschedules: list[str] | None = None
    visible: bool | None = True
    definitionFields: list[dict[str, Any]] | None = None
    options: dict[str, Any] | None = None
    priority: Literal["NORMAL", "MEDIUM", "HIGH"] = "NORMAL"


class FlowExecution(BaseModel):
    """Contract ``{type, data}``; hookline extensions ``runner``, ``url``, ``timeout_seconds``
    and ``signingsecret`` choose and configure the runner (see the README)."""

    type: Literal["code", "module"]
    data: FlowExecutionCode | FlowExecutionChain | None
    runner: str | None = Field(default=None, max_length=40)
    url: str | None = Field(default=None, max_length=500)
    timeout_seconds: float | None = Field(default=None, gt=0, le=86400)
    signingsecret: str | None = Field(default=None, max_length=100)


class ReadFlowExecution(BaseModel):
    """What is read back: never the signing secret, only whether there is one."""

    type: Literal["code", "module"]
    data: dict[str, Any] | None
    runner: str | None = None
    url: str | None = None
    timeout_seconds: float | None = None
    signed: bool = False

    @classmethod
    def of(cls, execution: dict[str, Any]) -> ReadFlowExecution:
        fields = {
            key: execution.get(key) for key in ("type", "data", "runner", "url", "timeout_seconds")
        }
        return cls.model_validate({**fields, "signed": SECRET_KEY in execution})


class CreateFlowItem(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    execution: FlowExecution
    config: FlowConfig | None = Field(default_factory=lambda: FlowConfig(datastores=[]))
    triggers: list[FlowTrigger]


class CreateSyncItem(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    config: dict[Literal["datalayer", "presync"], Any] | None = None
    connections: list[SyncsConnectionItem]
    mappings: list[CreateSyncMappingItem] = Field(default_factory=list)
    flows: list[CreateFlowItem] = Field(default_factory=list)


class ReadFlowItem(BaseModel):
    name: str
    id: str
    execution: ReadFlowExecution | None = None
    config: dict[str, Any] | None = None
    triggers: list[FlowTrigger] | None = None

    @classmethod
    def of(cls, flow: Flow) -> ReadFlowItem:
        return cls.model_validate(
            {
                "name": flow.name,
                "id": str(flow.id),
                "execution": ReadFlowExecution.of(flow.execution),
                "config": flow.config,
                "triggers": flow.triggers,
            }
        )


class ReadSyncItem(BaseModel):
    name: str
    config: dict[str, Any] | None = None
    connections: list[SyncsConnectionItem]
    mappings: list[StoredSyncMappingItem] = Field(default_factory=list)
    syncid: uuid.UUID
    consumers: list[str]
    flows: list[ReadFlowItem]

    @classmethod
    def of(cls, sync: Sync) -> ReadSyncItem:
        return cls.model_validate(
            {
                "name": sync.name,
                "config": sync.definition.get("config"),
                "connections": sync.definition.get("connections", []),
                "mappings": sync.definition.get("mappings", []),
                "syncid": sync.id,
                "consumers": [str(cid) for cid in sync.consumers],
                "flows": [ReadFlowItem.of(flow) for flow in sync.flows],
            }
        )


class CreateConsumerSyncItem(BaseModel):
    syncid: uuid.UUID
    integrationids: list[str] | None = Field(default_factory=list)
    country: str | None = Field(default=None, max_length=100)
    link_metadata: dict[str, Any] | None = None


class LinkSyncItem(BaseModel):
    url: str


class ReadFlowTrigger(BaseModel):
    id: str
    type: Literal["timer", "event"]
    cronschedule: str | None = None


class ReadFlowConsumerItem(BaseModel):
    name: str
    id: str
    config: dict[str, Any] | None = None
    values: dict[str, Any]
    enabled_on: datetime | None = None
    trigger: ReadFlowTrigger

    @classmethod
    def of(cls, item: ConsumerFlow) -> ReadFlowConsumerItem:
        trigger = item.flow.trigger(item.config.get("triggerid")) or {
            "id": item.config.get("triggerid") or cases.DEFAULT_TRIGGER_ID,
            "type": "event",
        }
        schedule = item.config.get("cronschedule") or next(
            iter(trigger.get("cronschedules") or []), None
        )
        return cls(
            name=item.flow.name,
            id=str(item.flow.id),
            config=item.flow.config,
            values=item.config.get("data") or {},
            enabled_on=item.enabled_at,
            trigger=ReadFlowTrigger(id=trigger["id"], type=trigger["type"], cronschedule=schedule),
        )


class SyncConsumerItem(BaseModel):
    syncid: uuid.UUID
    sync_name: str
    status: Literal["active", "inactive"] = "inactive"
    status_details: str | None = None
    enabled: bool = False  # the SDK's extension: at least one flow enabled
    link_createdon: datetime
    link_mappings: list[dict[str, Any]] | None = None
    skip_mappings: list[dict[str, Any]] | None = None
    link_metadata: dict[str, Any] | None = None
    link_presync: dict[str, Any] | None = None
    enabled_flows: list[ReadFlowConsumerItem] | None = None

    @classmethod
    def of(cls, item: ConsumerSync) -> SyncConsumerItem:
        enabled = [flow for flow in item.flows if flow.enabled]
        return cls(
            syncid=item.sync.id,
            sync_name=item.sync.name,
            status=item.status,
            status_details=None if enabled else "No flow is enabled for this consumer",
            enabled=bool(enabled),
            link_createdon=item.created_at,
            link_mappings=item.data.get("link_mappings"),
            link_metadata=item.data.get("link_metadata"),
            enabled_flows=[ReadFlowConsumerItem.of(flow) for flow in enabled],
        )


class ReadMappingItem(BaseModel):
    source_id: str | None = None
    target_id: str | None = None


class ReadSyncMappingItem(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: str
    display_order: Int32 = 0
    challenge_question: str | None = None
    conditions: Conditions | None = None
    values: list[ReadMappingItem]
    hidden_source_ids: list[str]
    sub_mapping_name: str
    sub_mapping_description: str | None = None


class EnableFlowConsumer(BaseModel):
    integrationids: list[str] = Field(default_factory=list)
    triggerid: str | None = "trigger-1"
    cronschedule: str | None = Field(default=None, max_length=120)
    data: dict[str, Any] | None = Field(default_factory=dict)


class UpdateFlowConsumer(BaseModel):
    triggerid: str | None = "trigger-1"
    data: dict[str, Any] | None = Field(default_factory=dict)


# --- syncs and flows ---------------------------------------------------------------------


@router.get("/syncs", response_model=list[ReadSyncItem])
async def get_syncs(account_id: AccountId, conn: ReadConn) -> list[ReadSyncItem]:
    return [ReadSyncItem.of(sync) for sync in await cases.list_syncs(conn, account_id)]


@router.post("/syncs", response_model=ReadSyncItem)
async def create_sync(
    body: CreateSyncItem, account_id: AccountId, runtime: RuntimeDep
) -> ReadSyncItem:
    definition = body.model_dump(mode="json", include={"config", "connections", "mappings"})
    async with runtime.db.transaction() as conn:
        sync = await cases.create_sync(
            conn,
            account_id,
            name=body.name,
            definition=definition,
            flow_items=[_flow_item(flow) for flow in body.flows],
            now=runtime.clock.now(),
            box=runtime.secret_box,
            runners=runners_of(runtime),
        )
    return ReadSyncItem.of(sync)


@router.get("/syncs/{syncid}", response_model=ReadSyncItem)
async def get_sync(syncid: str, account_id: AccountId, conn: ReadConn) -> ReadSyncItem:
    return ReadSyncItem.of(await cases.get_sync(conn, account_id, parse_id(syncid, "Sync")))


def _flow_item(flow: CreateFlowItem) -> dict[str, Any]:
    item = flow.model_dump(mode="json", exclude={"config"})
    # The config as sent (keys not given stay absent), or null.
    item["config"] = (
        flow.config.model_dump(mode="json", exclude_unset=True) if flow.config else None
    )
    item["execution"] = flow.execution.model_dump(mode="json", exclude_none=True)
    item["execution"].setdefault("data", None)
    if flow.execution.signingsecret is None:
        item["execution"].pop("signingsecret", None)
    return item


@router.post("/syncs/{syncid}/flows", response_model=ReadFlowItem)
async def create_flow(
    syncid: str, body: CreateFlowItem, account_id: AccountId, runtime: RuntimeDep
) -> ReadFlowItem:
    """Create a flow, or update the sync's flow of the same name (its id is kept)."""
    sync_id = parse_id(syncid, "Sync")
    async with runtime.db.transaction() as conn:
        flow = await cases.upsert_flow(
            conn,
            account_id,
            sync_id,
            _flow_item(body),
            now=runtime.clock.now(),
            box=runtime.secret_box,
            runners=runners_of(runtime),
        )
    return ReadFlowItem.of(flow)


@router.delete("/syncs/{syncid}/flows/{flowid}", status_code=204)
async def delete_flow(
    syncid: str, flowid: str, account_id: AccountId, runtime: RuntimeDep
) -> Response:
    async with runtime.db.transaction() as conn:
        await cases.delete_flow(
            conn,
            account_id,
            parse_id(syncid, "Sync"),
            parse_id(flowid, "Flow"),
            now=runtime.clock.now(),
        )
    return Response(status_code=204)


# --- consumers in syncs ------------------------------------------------------------------


@router.post("/consumers/{consumer_id}/syncs", response_model=LinkSyncItem)
async def join_sync(
    consumer_id: uuid.UUID,
    body: CreateConsumerSyncItem,
    request: Request,
    account_id: AccountId,
    runtime: RuntimeDep,
) -> LinkSyncItem:
    data = body.model_dump(mode="json", exclude={"syncid"}, exclude_unset=True)
    async with runtime.db.transaction() as conn:
        await cases.join_sync(
            conn, account_id, consumer_id, body.syncid, data, now=runtime.clock.now()
        )
    base = (runtime.settings.public_url or str(request.base_url)).rstrip("/")
    return LinkSyncItem(url=f"{base}/consumers/{consumer_id}/syncs/{body.syncid}")


@router.get("/consumers/{consumer_id}/syncs/{syncid}", response_model=SyncConsumerItem)
async def get_consumer_sync(
    consumer_id: uuid.UUID,
    syncid: uuid.UUID,
    account_id: AccountId,
    conn: ReadConn,
    preview_executionid: uuid.UUID | None = None,
) -> SyncConsumerItem:
    return SyncConsumerItem.of(await cases.get_consumer_sync(conn, account_id, consumer_id, syncid))


@router.patch("/consumers/{consumer_id}/syncs/{syncid}", status_code=204)
async def update_consumer_sync(
    consumer_id: uuid.UUID,
    syncid: uuid.UUID,
    body: list[ReadSyncMappingItem],
    account_id: AccountId,
    runtime: RuntimeDep,
) -> Response:
    async with runtime.db.transaction() as conn:
        await cases.update_consumer_mappings(
            conn, account_id, consumer_id, syncid, [item.model_dump(mode="json") for item in body]
        )
    return Response(status_code=204)


@router.post(
    "/consumers/{consumer_id}/syncs/{syncid}/flows/{flowid}/enable",
    response_model=ReadFlowConsumerItem,
)
async def enable_flow(
    consumer_id: uuid.UUID,
    syncid: uuid.UUID,
    flowid: uuid.UUID,
    body: EnableFlowConsumer,
    account_id: AccountId,
    runtime: RuntimeDep,
) -> ReadFlowConsumerItem:
    """Enable a flow for a consumer; ``account.flow.enabled`` only if it was not enabled."""
    async with runtime.db.transaction() as conn:
        item = await cases.enable_flow(
            conn,
            account_id,
            consumer_id,
            syncid,
            flowid,
            trigger_id=body.triggerid,
            trigger_explicit="triggerid" in body.model_fields_set,
            cronschedule=body.cronschedule,
            data=body.data,
            integrationids=body.integrationids,
            now=runtime.clock.now(),
        )
    return ReadFlowConsumerItem.of(item)


@router.post("/consumers/{consumer_id}/syncs/{syncid}/flows/{flowid}/disable", status_code=204)
async def disable_flow(
    consumer_id: uuid.UUID,
    syncid: uuid.UUID,
    flowid: uuid.UUID,
    account_id: AccountId,
    runtime: RuntimeDep,
) -> Response:
    async with runtime.db.transaction() as conn:
        await cases.disable_flow(
            conn, account_id, consumer_id, syncid, flowid, now=runtime.clock.now()
        )
    return Response(status_code=204)


@router.patch("/consumers/{consumer_id}/syncs/{syncid}/flows/{flowid}", status_code=204)
async def update_flow_consumer(
    consumer_id: uuid.UUID,
    syncid: uuid.UUID,
    flowid: uuid.UUID,
    body: UpdateFlowConsumer,
    account_id: AccountId,
    runtime: RuntimeDep,
) -> Response:
    async with runtime.db.transaction() as conn:
        await cases.update_flow_consumer(
            conn,
            account_id,
            consumer_id,
            syncid,
            flowid,
            trigger_id=body.triggerid,
            trigger_explicit="triggerid" in body.model_fields_set,
            data=body.data,
            now=runtime.clock.now(),
        )
    return Response(status_code=204)
