"""The connector catalog: which software a consumer can connect, and what it needs.

A small built-in catalog ships with hookline (inserted at start-up when missing); admins add
more with ``hookline integrations add FILE``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from hookline.errors import InvalidRequest, NotFound
from hookline.store.tables import integrations

POS_API = "Point of Sale"
APIS = ("Point of Sale", "eCommerce", "Accounting", "Invoicing", "Communication", "Banking",
        "Custom", "Payment", "Property Management System")


@dataclass(frozen=True)
class Credential:
    name: str
    optional: bool = False
    secret: bool = False  # masked in forms, never returned

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "optional": self.optional, "secret": self.secret}


@dataclass(frozen=True)
class Integration:
    id: int
    name: str
    api: str
    local_agent: bool = False
    status: str = "active"
    credentials: tuple[Credential, ...] = field(default_factory=tuple)
    logo_url: str = ""
    icon_url: str = ""

    @property
    def is_pos(self) -> bool:
        return self.api == POS_API


BUILTIN: tuple[Integration, ...] = (
    Integration(1001, "Odoo Accounting", "Accounting",
                credentials=(Credential("url"), Credential("database"), Credential("username"),
                             Credential("api_key", secret=True))),
    Integration(1002, "Exact Online", "Accounting",
                credentials=(Credential("client_id"), Credential("client_secret", secret=True),
                             Credential("division", optional=True))),
    Integration(2001, "Lightspeed Restaurant", "Point of Sale",
                credentials=(Credential("business_location_id"),
                             Credential("api_token", secret=True))),
    Integration(2002, "SumUp POS", "Point of Sale",
                credentials=(Credential("merchant_code"), Credential("api_key", secret=True))),
    Integration(2003, "Local POS Agent", "Point of Sale", local_agent=True,
                credentials=(Credential("store_code"),
                             Credential("agent_password", optional=True, secret=True))),
)


def integration_from_row(row: Any) -> Integration:
    return Integration(
        id=row.id, name=row.name, api=row.api, local_agent=bool(row.local_agent),
        status=row.status, logo_url=row.logo_url or "", icon_url=row.icon_url or "",
        credentials=tuple(Credential(**item) for item in row.credentials),
    )


def parse_integration(data: dict[str, Any]) -> Integration:
    """An integration from a user's file (JSON), with clear errors for each mistake."""
    try:
        integration = Integration(
            id=int(data["integrationid"]),
            name=str(data["name"]).strip(),
            api=str(data["api"]),
            local_agent=bool(data.get("local_agent", False)),
            status=str(data.get("status", "active")),
            logo_url=str(data.get("logo_url", "")),
            icon_url=str(data.get("icon_url", "")),
            credentials=tuple(
                Credential(name=str(item["name"]), optional=bool(item.get("optional", False)),
                           secret=bool(item.get("secret", False)))
                for item in data.get("credentials", [])
            ),
        )
    except (KeyError, TypeError, ValueError) as error:
        raise InvalidRequest(f"Invalid integration definition: {error!r}") from None
    if integration.api not in APIS:
        raise InvalidRequest(f"Unknown api {integration.api!r}; expected one of {APIS}")
    if integration.status not in ("active", "inactive"):
        raise InvalidRequest("status must be active or inactive")
    if not integration.name:
        raise InvalidRequest("name cannot be empty")
    return integration


async def add_integration(conn: AsyncConnection, integration: Integration, *,
                          now: datetime) -> None:
    if await find_integration(conn, integration.id) is not None:
        raise InvalidRequest(f"Integration {integration.id} already exists")
    await conn.execute(insert(integrations).values(_values(integration, now)))


async def ensure_builtin_integrations(conn: AsyncConnection, *, now: datetime) -> None:
    existing = set((await conn.execute(select(integrations.c.id))).scalars())
    missing = [_values(item, now) for item in BUILTIN if item.id not in existing]
    if missing:
        await conn.execute(insert(integrations), missing)


async def find_integration(conn: AsyncConnection, integration_id: int) -> Integration | None:
    row = (
        await conn.execute(select(integrations).where(integrations.c.id == integration_id))
    ).first()
    return integration_from_row(row) if row else None


async def get_integration(conn: AsyncConnection, integration_id: int) -> Integration:
    integration = await find_integration(conn, integration_id)
    if integration is None:
        raise NotFound(f"Integration {integration_id} not found")
    return integration


async def list_integrations(conn: AsyncConnection, *, status: str | None = None
                            ) -> list[Integration]:
    query = select(integrations).order_by(integrations.c.id)
    if status:
        query = query.where(integrations.c.status == status)
    return [integration_from_row(row) for row in await conn.execute(query)]


def _values(integration: Integration, now: datetime) -> dict[str, Any]:
    return {
        "id": integration.id, "name": integration.name, "api": integration.api,
        "local_agent": integration.local_agent, "status": integration.status,
        "logo_url": integration.logo_url, "icon_url": integration.icon_url,
        "credentials": [c.as_dict() for c in integration.credentials], "created_at": now,
    }
