"""GET /integrations (contract): the connector catalog stored in the database."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter
from pydantic import BaseModel

from hookline.api.deps import AccountId, ReadConn
from hookline.platform.integrations import Integration, list_integrations

router = APIRouter(tags=["Integrations"])


class IntegrationsCredentialItem(BaseModel):
    name: str
    optional: bool = False
    visibility: Literal["consumer", "connector", "both"] | None = "both"


class IntegrationItem(BaseModel):
    integrationid: int
    name: str
    status: Literal["active", "inactive"]
    api: str
    logo_url: str
    icon_url: str
    post_connections: list[dict[str, Any]] | None = []
    operations_coverage: list[dict[str, Any]] | None = []
    credentials: list[IntegrationsCredentialItem] | None = []
    supported_countries: list[str] | None = None
    local_agent: bool = False

    @classmethod
    def of(cls, integration: Integration, *, coverage: bool) -> IntegrationItem:
        return cls(
            integrationid=integration.id,
            name=integration.name,
            status=integration.status,
            api=integration.api,
            logo_url=integration.logo_url,
            icon_url=integration.icon_url,
            post_connections=list(integration.post_connections),
            operations_coverage=list(integration.operations_coverage) if coverage else [],
            credentials=[
                IntegrationsCredentialItem(
                    name=item.name, optional=item.optional, visibility=item.visibility
                )
                for item in integration.credentials
            ],
            supported_countries=(
                list(integration.supported_countries)
                if integration.supported_countries is not None
                else None
            ),
            local_agent=integration.local_agent,
        )


@router.get(
    "/integrations",
    response_model=list[IntegrationItem],
    operation_id="integrations_get_integrations",
)
async def get_integrations(
    account_id: AccountId,
    conn: ReadConn,
    status: Literal["active", "inactive"] | None = None,
    include_coverage: Literal["true", "false"] | None = "false",
) -> list[IntegrationItem]:
    """``operations_coverage`` is filled only with ``include_coverage=true``, as upstream."""
    found = await list_integrations(conn, status=status)
    return [IntegrationItem.of(item, coverage=include_coverage == "true") for item in found]
