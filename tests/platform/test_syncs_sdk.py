"""The official Chift SDK's sync and flow calls against a live ``hookline serve``."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import chift
import httpx
from chift.models.consumers.sync import Sync as ConsumerSync

from tests.platform.syncs_support import flow_body
from tests.test_cli_and_sdk import run_cli


async def test_official_sdk_syncs_flows_and_executions(database: Any, live_server: Any) -> None:
    server = live_server()
    created = await asyncio.to_thread(
        run_cli, database.env(), "accounts", "create", "sdk", "--json"
    )
    assert created.returncode == 0, created.stderr
    key = json.loads(created.stdout)
    async with httpx.AsyncClient(base_url=server.url) as http:
        token = (await http.post("/token", json=key)).json()["access_token"]
        headers = {"Authorization": f"Bearer {token}"}
        consumer = (await http.post("/consumers", json={"name": "Bistro"}, headers=headers)).json()[
            "consumerid"
        ]
        sync = (
            await http.post(
                "/syncs",
                headers=headers,
                json={"name": "Sales", "connections": [], "flows": [flow_body("invoices")]},
            )
        ).json()
        sync_id, flow_id = sync["syncid"], sync["flows"][0]["id"]
        enabled = await http.post(
            f"/consumers/{consumer}/syncs/{sync_id}/flows/{flow_id}/enable",
            json={},
            headers=headers,
        )
        assert enabled.status_code == 200

    def use_sdk() -> dict[str, Any]:
        chift.url_base = server.url
        chift.account_id = key["accountId"]
        chift.client_id = key["clientId"]
        chift.client_secret = key["clientSecret"]
        out: dict[str, Any] = {}
        out["all"] = chift.Sync.all()
        out["get"] = chift.Sync.get(sync_id)
        out["new"] = chift.Flow.create(sync_id, flow_body("orders"))
        out["updated"] = chift.Flow.create(
            sync_id,
            flow_body("orders", execution={"type": "module", "data": {"name": "orders-chain"}}),
        )
        out["trigger"] = chift.Flow.trigger(sync_id, flow_id, {"consumers": [consumer], "data": {}})
        parent = out["trigger"]["data"]["executionid"]
        out["chain"] = chift.Flow.chainexecution(sync_id, flow_id, parent)
        out["consumer_sync"] = ConsumerSync(consumer, None).get(sync_id)
        out["deleted"] = chift.Flow.delete(sync_id, out["new"].id)
        out["after"] = chift.Sync.get(sync_id)
        return out

    out = await asyncio.to_thread(use_sdk)
    assert [str(item.syncid) for item in out["all"]] == [sync_id]
    assert out["get"].name == "Sales"
    assert [flow.name for flow in out["get"].flows] == ["invoices"]
    assert [str(cid) for cid in out["get"].consumers] == [consumer]
    assert out["updated"].id == out["new"].id
    assert out["updated"].execution.data.name == "orders-chain"
    assert out["trigger"]["status"] == "success"
    assert out["chain"] == {
        "id": out["trigger"]["data"]["executionid"],
        "parentexecutionid": None,
        "start": out["chain"]["start"],
        "end": None,
        "status": "running",
    }
    consumer_sync = out["consumer_sync"]
    assert str(consumer_sync.syncid) == sync_id
    assert consumer_sync.sync_name == "Sales"
    assert consumer_sync.enabled is True
    assert [flow.id for flow in consumer_sync.enabled_flows] == [flow_id]
    assert out["deleted"] is True
    assert [flow.name for flow in out["after"].flows] == ["invoices"]
