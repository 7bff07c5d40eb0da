"""The official Chift SDK (0.6.17) managing webhooks on a live hookline server.

In this SDK version ``chift.Webhook`` offers ``get`` and ``all`` as class methods; ``create``
is inherited un-wrapped, so it is called on an instance (``chift.Webhook(None, None)``).
It has no update, delete or logs call: those go through the SDK's own ``ChiftClient``
(``update_one``, ``delete_one``, ``get_all``), which is what a newer SDK would do under the hood.
"""

from __future__ import annotations

import asyncio
import json
import uuid

import chift
import pytest
from chift.api.client import ChiftClient
from chift.api.exceptions import ChiftException

from tests.test_cli_and_sdk import run_cli


async def test_sdk_creates_reads_lists_updates_deletes_and_reads_logs(
    database, live_server
) -> None:
    server = live_server()
    result = await asyncio.to_thread(run_cli, database.env(), "accounts", "create", "sdk", "--json")
    key = json.loads(result.stdout)

    def use_sdk() -> dict:
        chift.url_base = server.url
        chift.account_id = key["accountId"]
        chift.client_id = key["clientId"]
        chift.client_secret = key["clientSecret"]
        out: dict = {}
        created = chift.Webhook(None, None).create(
            {
                "event": "pos.order.completed",
                "url": "https://example.com/sdk",
                "signingsecret": "sdk-secret",
                "integrationid": 2001,
            }
        )
        out["created"] = created
        out["got"] = chift.Webhook.get(str(created.webhookid))
        chift.Webhook(None, None).create(
            {"event": "account.flow.executed", "url": "https://example.com/flows"}
        )
        out["all"] = chift.Webhook.all()
        client = ChiftClient()
        out["updated"] = client.update_one(
            "webhooks", None, str(created.webhookid), {"status": "inactive"}
        )
        out["logs"] = client.get_all("webhooks", None, extra_path=f"{created.webhookid}/logs")
        with pytest.raises(ChiftException) as duplicate:
            chift.Webhook(None, None).create(
                {"event": "account.flow.executed", "url": "https://example.com/flows"}
            )
        out["duplicate"] = duplicate.value
        out["deleted"] = client.delete_one("webhooks", None, str(created.webhookid))
        with pytest.raises(ChiftException) as missing:
            chift.Webhook.get(str(created.webhookid))
        out["missing"] = missing.value
        return out

    out = await asyncio.to_thread(use_sdk)
    created = out["created"]
    assert isinstance(created, chift.openapi.models.WebhookInstance)
    assert str(created.accountid) == key["accountId"]
    assert (created.event, created.url, created.integrationid) == (
        "pos.order.completed",
        "https://example.com/sdk",
        2001,
    )
    assert created.status.value == "active"
    assert "signingsecret" not in created.model_dump()
    assert out["got"] == created
    assert [w.event for w in out["all"]] == ["pos.order.completed", "account.flow.executed"]
    assert out["updated"]["status"] == "inactive"
    assert out["updated"]["webhookid"] == str(created.webhookid)
    assert out["logs"] == []
    assert out["duplicate"].error_code == "ERROR_WEBHOOK_DUPLICATE"
    assert out["deleted"] is True
    assert out["missing"].error_code == "ERROR_WEBHOOK_NOT_FOUND"
    assert uuid.UUID(str(created.webhookid))
