"""Connections (contract paths) plus two hookline extensions: reading one connection, and
the connector status report (``POST .../connections/{id}/status``)."""

from __future__ import annotations

import uuid
from typing import Any, Literal

from fastapi import APIRouter, Body, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from hookline.api.deps import AccountId, ReadConn, RuntimeDep
from hookline.api.limits import Int32
from hookline.api.routers.activation import activation_url, public_base
from hookline.errors import InvalidRequest
from hookline.platform import connections as use_cases
from hookline.platform.connections import Connection

router = APIRouter(tags=["Connections"])

ApiName = Literal[
    "Point of Sale",
    "eCommerce",
    "Accounting",
    "Invoicing",
    "Banking",
    "Custom",
    "Payment",
    "Property Management System",
]


class LocalAgentInfo(BaseModel):
    status: Literal["up", "down"]


class ConnectionItem(BaseModel):
    connectionid: uuid.UUID
    name: str
    integration: str
    integrationid: int
    api: str
    data: dict[str, Any] | None = None
    status: Literal["active", "inactive"]
    agent: LocalAgentInfo | None = None

    @classmethod
    def of(cls, connection: Connection) -> ConnectionItem:
        agent = connection.agent
        return cls(
            connectionid=connection.id,
            name=connection.name,
            integration=connection.integration_name,
            integrationid=connection.integration_id,
            api=connection.api,
            status=connection.status,
            agent=LocalAgentInfo(status=agent) if agent else None,
        )


class CredentialItem(BaseModel):
    key: str
    value: str


class PostConnectionItem(BaseModel):
    model_config = ConfigDict(extra="ignore")

    integrationid: Int32 | None = None
    name: str | None = Field(default=None, max_length=80)
    credentials: list[CredentialItem] | None = None
    country: str | None = None
    redirect: bool | None = False
    apis: list[ApiName] | None = None


class PatchConnectionItem(BaseModel):
    model_config = ConfigDict(extra="ignore")

    redirect: bool | None = False
    name: str | None = Field(default=None, max_length=80)
    credentials: list[CredentialItem] | None = None


class LinkItem(BaseModel):
    """The contract's answer: ``url``. When the connection was created or changed at once,
    hookline adds the connection (``connectionid``, ``status``) and, for a new local-agent
    connection, its ``agent_token`` (shown only this once)."""

    url: str
    connectionid: uuid.UUID | None = None
    status: Literal["active", "inactive"] | None = None
    agent_token: str | None = None
    expires_on: int | None = None  # Unix seconds, for activation links


class ConnectionStatusReport(BaseModel):
    status: Literal["active", "inactive"]
    error_code: str | None = Field(default=None, max_length=120)
    message: str | None = Field(default=None, max_length=2000)


def _resource_url(base: str, consumer_id: uuid.UUID, connection_id: uuid.UUID) -> str:
    return f"{base}/consumers/{consumer_id}/connections/{connection_id}"


def _credentials(items: list[CredentialItem]) -> dict[str, str]:
    return use_cases.credentials_from_pairs((item.key, item.value) for item in items)


@router.get(
    "/consumers/{consumer_id}/connections",
    response_model=list[ConnectionItem],
    operation_id="connections_get_connections",
)
async def get_connections(
    consumer_id: uuid.UUID, account_id: AccountId, conn: ReadConn
) -> list[ConnectionItem]:
    found = await use_cases.list_connections(conn, account_id, consumer_id)
    return [ConnectionItem.of(item) for item in found]


@router.post(
    "/consumers/{consumer_id}/connections",
    response_model=LinkItem,
    response_model_exclude_none=True,
    operation_id="connections_create_connection",
)
async def create_connection(
    consumer_id: uuid.UUID,
    account_id: AccountId,
    runtime: RuntimeDep,
    request: Request,
    item: PostConnectionItem | None = Body(default=None),
) -> LinkItem:
    """Without credentials: an activation link valid ``activation_ttl_seconds``. With
    ``integrationid`` (+ ``name``) + ``credentials``: the connection, created at once."""
    item = item or PostConnectionItem()
    base = public_base(runtime, request)
    now = runtime.clock.now()
    if item.credentials is not None:
        if item.integrationid is None:
            raise InvalidRequest("integrationid is required with credentials")
        async with runtime.db.transaction() as conn:
            created = await use_cases.create_connection(
                conn,
                runtime.secret_box,
                account_id=account_id,
                consumer_id=consumer_id,
                integration_id=item.integrationid,
                name=item.name,
                credentials=_credentials(item.credentials),
                now=now,
            )
        connection = created.connection
        return LinkItem(
            url=_resource_url(base, consumer_id, connection.id),
            connectionid=connection.id,
            status=connection.status,
            agent_token=created.agent_token,
        )
    async with runtime.db.transaction() as conn:
        link = await use_cases.create_activation_link(
            conn,
            account_id=account_id,
            consumer_id=consumer_id,
            now=now,
            ttl_seconds=runtime.settings.activation_ttl_seconds,
            integration_id=item.integrationid,
            name=item.name,
        )
    return LinkItem(
        url=activation_url(base, link.token), expires_on=int(link.link.expires_at.timestamp())
    )


@router.get(
    "/consumers/{consumer_id}/connections/{connectionid}",
    response_model=ConnectionItem,
    tags=["hookline"],
)
async def get_connection(
    consumer_id: uuid.UUID, connectionid: uuid.UUID, account_id: AccountId, conn: ReadConn
) -> ConnectionItem:
    """Extension: one connection (the contract only lists them)."""
    return ConnectionItem.of(
        await use_cases.get_connection(conn, account_id, consumer_id, connectionid)
    )


@router.patch(
    "/consumers/{consumer_id}/connections/{connectionid}",
    response_model=LinkItem,
    response_model_exclude_none=True,
    operation_id="connections_update_connection",
)
async def update_connection(
    consumer_id: uuid.UUID,
    connectionid: uuid.UUID,
    account_id: AccountId,
    runtime: RuntimeDep,
    request: Request,
    item: PatchConnectionItem | None = Body(default=None),
) -> LinkItem:
    """``name``/``credentials`` given are applied at once (``updated`` fires if they change
    anything). Without credentials the answer is a link where the consumer can enter new
    ones; with credentials it is the connection's own URL."""
    item = item or PatchConnectionItem()
    base = public_base(runtime, request)
    now = runtime.clock.now()
    async with runtime.db.transaction() as conn:
        change = await use_cases.update_connection(
            conn,
            runtime.secret_box,
            account_id=account_id,
            consumer_id=consumer_id,
            connection_id=connectionid,
            now=now,
            name=item.name,
            credentials=_credentials(item.credentials) if item.credentials is not None else None,
        )
        link = None
        if item.credentials is None:
            link = await use_cases.create_activation_link(
                conn,
                account_id=account_id,
                consumer_id=consumer_id,
                now=now,
                ttl_seconds=runtime.settings.activation_ttl_seconds,
                connection_id=connectionid,
            )
    connection = change.connection
    if link is not None:
        return LinkItem(
            url=activation_url(base, link.token),
            connectionid=connection.id,
            status=connection.status,
            expires_on=int(link.link.expires_at.timestamp()),
        )
    return LinkItem(
        url=_resource_url(base, consumer_id, connection.id),
        connectionid=connection.id,
        status=connection.status,
    )


@router.delete(
    "/consumers/{consumer_id}/connections/{connectionid}",
    status_code=204,
    response_class=Response,
    operation_id="connections_delete_connection",
)
async def delete_connection(
    consumer_id: uuid.UUID, connectionid: uuid.UUID, account_id: AccountId, runtime: RuntimeDep
) -> Response:
    async with runtime.db.transaction() as conn:
        await use_cases.delete_connection(
            conn,
            account_id=account_id,
            consumer_id=consumer_id,
            connection_id=connectionid,
            now=runtime.clock.now(),
        )
    return Response(status_code=204)


@router.post(
    "/consumers/{consumer_id}/connections/{connectionid}/status",
    response_model=ConnectionItem,
    tags=["hookline"],
)
async def report_connection_status(
    consumer_id: uuid.UUID,
    connectionid: uuid.UUID,
    report: ConnectionStatusReport,
    account_id: AccountId,
    runtime: RuntimeDep,
) -> ConnectionItem:
    """Extension for connectors: the credentials stopped working (``inactive``, with an
    optional ``error_code``/``message``) or work again (``active``). Fires
    ``account.connection.updated`` on a real change only."""
    async with runtime.db.transaction() as conn:
        change = await use_cases.set_connection_status(
            conn,
            account_id=account_id,
            consumer_id=consumer_id,
            connection_id=connectionid,
            status=report.status,
            error_code=report.error_code,
            message=report.message,
            now=runtime.clock.now(),
        )
    return ConnectionItem.of(change.connection)
