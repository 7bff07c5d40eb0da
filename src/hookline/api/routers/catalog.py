"""The event catalog: GET /webhooks/list (contract) and GET /event-types (extension)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel

from hookline.api.deps import AccountId
from hookline.catalog import EVENT_TYPES, all_schemas

router = APIRouter()


class WebhookItem(BaseModel):
    event: str
    api: str | None = None


@router.get(
    "/webhooks/list",
    response_model=list[WebhookItem],
    tags=["Webhooks"],
    operation_id="webhooks_get_webhook_types",
)
async def webhook_types(account_id: AccountId) -> list[WebhookItem]:
    return [WebhookItem(event=event_type.name, api=event_type.api) for event_type in EVENT_TYPES]


@router.get("/event-types", tags=["hookline"])
async def event_types(account_id: AccountId) -> list[dict[str, Any]]:
    """Every event type with its description, JSON Schema and an example body."""
    return all_schemas()
