"""The connector catalog: which software a consumer can connect, and what it needs.

A small built-in catalog ships with hookline (inserted at start-up when missing); admins add
more with ``hookline integrations add FILE``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from hookline.delivery.webhooks import IntegrationRef
from hookline.errors import InvalidRequest, NotFound
from hookline.platform.statuses import IntegrationStatus
from hookline.store.tables import integrations

POS_API = "Point of Sale"
APIS = (
    "Point of Sale",
    "eCommerce",
    "Accounting",
    "Invoicing",
    "Communication",
    "Banking",
    "Custom",
    "Payment",
    "Property Management System",
)
VISIBILITIES = ("consumer", "connector", "both")
COVERAGE_STATUSES = ("SUPPORTED", "NOT_IMPLEMENTED", "NOT_SUPPORTED", "UNDER_ANALYSIS")


@dataclass(frozen=True)
class Credential:
    name: str
    optional: bool = False
    secret: bool = False  # masked in forms, never returned
    # Who fills it in: the consumer on the activation page, the connector, or both.
    visibility: str = "both"

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "optional": self.optional,
            "secret": self.secret,
            "visibility": self.visibility,
        }


@dataclass(frozen=True)
class Integration:
    id: int
    name: str
    api: str
    local_agent: bool = False
    status: IntegrationStatus = IntegrationStatus.ACTIVE
    credentials: tuple[Credential, ...] = field(default_factory=tuple)
    logo_url: str = ""
    icon_url: str = ""
    # Contract fields served as given by the catalog file (hookline does not interpret them).
    post_connections: tuple[dict[str, Any], ...] = ()
    operations_coverage: tuple[dict[str, Any], ...] = ()
    supported_countries: tuple[str, ...] | None = None

    @property
    def is_pos(self) -> bool:
        return self.api == POS_API

    def credential(self, name: str) -> Credential | None:
        return next((item for item in self.credentials if item.name == name), None)


BUILTIN: tuple[Integration, ...] = (
    Integration(
        1001,
        "Odoo Accounting",
        "Accounting",
        credentials=(
            Credential("url"),
            Credential("database"),
            Credential("username"),
            Credential("api_key", secret=True),
        ),
    ),
    Integration(
        1002,
        "Exact Online",
        "Accounting",
        credentials=(
            Credential("client_id"),
            Credential("client_secret", secret=True),
            Credential("division", optional=True),
        ),
    ),
    Integration(
        2001,
        "Lightspeed Restaurant",
        "Point of Sale",
        credentials=(Credential("business_location_id"), Credential("api_token", secret=True)),
    ),
    Integration(
        2002,
        "SumUp POS",
        "Point of Sale",
        credentials=(Credential("merchant_code"), Credential("api_key", secret=True)),
    ),
    Integration(
        2003,
        "Local POS Agent",
        "Point of Sale",
        local_agent=True,
        credentials=(
            Credential("store_code"),
            Credential("agent_password", optional=True, secret=True),
        ),
    ),
)


def _parse_status(value: object) -> IntegrationStatus:
    if value not in tuple(IntegrationStatus):
        raise InvalidRequest("status must be active or inactive")
    return IntegrationStatus(str(value))


def integration_from_row(row: Any) -> Integration:
    details = row.details or {}
    countries = details.get("supported_countries")
    return Integration(
        id=row.id,
        name=row.name,
        api=row.api,
        local_agent=bool(row.local_agent),
        status=IntegrationStatus(row.status),
        logo_url=row.logo_url or "",
        icon_url=row.icon_url or "",
        credentials=tuple(Credential(**item) for item in row.credentials),
        post_connections=tuple(details.get("post_connections") or ()),
        operations_coverage=tuple(details.get("operations_coverage") or ()),
        supported_countries=tuple(countries) if countries is not None else None,
    )


def _parse_credential(item: Any) -> Credential:
    if isinstance(item, str):
        return Credential(name=item)
    visibility = item.get("visibility") or "both"
    if visibility not in VISIBILITIES:
        raise ValueError(f"credential visibility must be one of {VISIBILITIES}")
    name = str(item["name"]).strip()
    if not name:
        raise ValueError("credential name cannot be empty")
    return Credential(
        name=name,
        optional=bool(item.get("optional", False)),
        secret=bool(item.get("secret", False)),
        visibility=visibility,
    )


def _parse_post_connection(item: Any) -> dict[str, Any]:
    config = item.get("config") or {}
    return {
        "id": str(item["id"]),
        "title": str(item["title"]),
        "optional": bool(item["optional"]),
        "resource": str(item["resource"]),
        "config": {
            "enabled": bool(config.get("enabled", False)),
            "allow_multiple": bool(config.get("allow_multiple", False)),
        },
    }


def _parse_coverage(item: Any) -> dict[str, Any]:
    status = str(item["status"])
    if status not in COVERAGE_STATUSES:
        raise ValueError(f"coverage status must be one of {COVERAGE_STATUSES}")
    return {"operation": str(item["operation"]), "status": status}


def parse_integration(data: dict[str, Any]) -> Integration:
    """An integration from a user's file (JSON), with clear errors for each mistake."""
    try:
        integration = Integration(
            id=int(data["integrationid"]),
            name=str(data["name"]).strip(),
            api=str(data["api"]),
            local_agent=bool(data.get("local_agent", False)),
            status=_parse_status(data.get("status", IntegrationStatus.ACTIVE)),
            logo_url=str(data.get("logo_url") or ""),
            icon_url=str(data.get("icon_url") or ""),
            credentials=tuple(_parse_credential(item) for item in data.get("credentials") or []),
            post_connections=tuple(
                _parse_post_connection(item) for item in data.get("post_connections") or []
            ),
            operations_coverage=tuple(
                _parse_coverage(item) for item in data.get("operations_coverage") or []
            ),
            supported_countries=(
                tuple(str(code) for code in data["supported_countries"])
                if data.get("supported_countries") is not None
                else None
            ),
        )
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        raise InvalidRequest(f"Invalid integration definition: {error!r}") from None
    if integration.api not in APIS:
        raise InvalidRequest(f"Unknown api {integration.api!r}; expected one of {APIS}")
    if not integration.name:
        raise InvalidRequest("name cannot be empty")
    if integration.id <= 0:
        raise InvalidRequest("integrationid must be a positive integer")
    names = [item.name for item in integration.credentials]
    if len(names) != len(set(names)):
        raise InvalidRequest("credential names must be unique")
    return integration


async def add_integration(
    conn: AsyncConnection, integration: Integration, *, now: datetime, replace: bool = False
) -> bool:
    """Insert the integration; with ``replace``, overwrite an existing one with that id.

    Returns True when it was new. Existing connections keep working after a replace: their
    stored credentials are checked against the new field list only when they change.
    """
    existing = await find_integration(conn, integration.id)
    if existing is not None and not replace:
        raise InvalidRequest(f"Integration {integration.id} already exists")
    values = _values(integration, now)
    if existing is None:
        await conn.execute(insert(integrations).values(values))
        return True
    values.pop("created_at")
    await conn.execute(
        update(integrations).where(integrations.c.id == integration.id).values(values)
    )
    return False


async def ensure_builtin_integrations(conn: AsyncConnection, *, now: datetime) -> None:
    existing = set((await conn.execute(select(integrations.c.id))).scalars())
    missing = [_values(item, now) for item in BUILTIN if item.id not in existing]
    if missing:
        await conn.execute(insert(integrations), missing)


# integrations.id is a 32-bit INTEGER column: a larger id cannot exist, and asking the
# database for it fails (PostgreSQL refuses the parameter, SQLite beyond 64 bits).
MAX_INTEGRATION_ID = 2**31 - 1


async def find_integration(conn: AsyncConnection, integration_id: int) -> Integration | None:
    if not -MAX_INTEGRATION_ID - 1 <= integration_id <= MAX_INTEGRATION_ID:
        return None
    row = (
        await conn.execute(select(integrations).where(integrations.c.id == integration_id))
    ).first()
    return integration_from_row(row) if row else None


async def integration_ref(
    conn: AsyncConnection, integration_id: int | None
) -> IntegrationRef | None:
    """What the delivery layer needs to know of an ``integrationid`` (it cannot read the
    catalog itself): ``None`` when none was given or it does not exist."""
    if integration_id is None:
        return None
    found = await find_integration(conn, integration_id)
    return IntegrationRef(found.id, found.is_pos) if found else None


async def get_integration(conn: AsyncConnection, integration_id: int) -> Integration:
    integration = await find_integration(conn, integration_id)
    if integration is None:
        raise NotFound(f"Integration {integration_id} not found")
    return integration


async def list_integrations(
    conn: AsyncConnection, *, status: str | None = None
) -> list[Integration]:
    query = select(integrations).order_by(integrations.c.id)
    if status:
        query = query.where(integrations.c.status == status)
    return [integration_from_row(row) for row in await conn.execute(query)]


def _values(integration: Integration, now: datetime) -> dict[str, Any]:
    return {
        "id": integration.id,
        "name": integration.name,
        "api": integration.api,
        "local_agent": integration.local_agent,
        "status": integration.status,
        "logo_url": integration.logo_url,
        "icon_url": integration.icon_url,
        "credentials": [c.as_dict() for c in integration.credentials],
        "details": {
            "post_connections": list(integration.post_connections),
            "operations_coverage": list(integration.operations_coverage),
            "supported_countries": (
                list(integration.supported_countries)
                if integration.supported_countries is not None
                else None
            ),
        },
        "created_at": now,
    }
